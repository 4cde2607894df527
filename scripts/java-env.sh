# Sourced by ./lightmesh and scripts/*: exports JAVA_HOME pointing at a JDK 25, or exits with a clear message.
find_jdk25() {
  local candidates=()
  [ -n "${JAVA_HOME:-}" ] && candidates+=("$JAVA_HOME")
  candidates+=(/usr/lib/jvm/temurin-25-jdk-amd64 /usr/lib/jvm/temurin-25* /usr/lib/jvm/*-25* /usr/lib/jvm/*25*)
  local home
  for home in "${candidates[@]}"; do
    if [ -x "$home/bin/java" ] && "$home/bin/java" -version 2>&1 | grep -qE 'version "25'; then
      echo "$home"; return 0
    fi
  done
  return 1
}
if ! LIGHTMESH_JDK="$(find_jdk25)"; then
  echo "lightmesh: JDK 25 not found. Install Temurin 25 (/usr/lib/jvm/temurin-25-jdk-amd64) or set JAVA_HOME to a JDK 25." >&2
  exit 1
fi
export JAVA_HOME="$LIGHTMESH_JDK"
export PATH="$JAVA_HOME/bin:$PATH"
