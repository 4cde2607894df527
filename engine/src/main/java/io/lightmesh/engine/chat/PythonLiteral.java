package io.lightmesh.engine.chat;

/**
 * Rewrites a Python literal ({@code {'name': 'f', 'arguments': {'x': True, 'y': None}}}) as JSON: single-quoted
 * strings become double-quoted ones, True/False/None become true/false/null. Double-quoted strings and everything
 * else pass through, so valid JSON is unchanged.
 */
final class PythonLiteral {
    private PythonLiteral() {}

    static String toJson(String s) {
        StringBuilder sb = new StringBuilder(s.length() + 8);
        int i = 0;
        while (i < s.length()) {
            char c = s.charAt(i);
            if (c == '"') {
                int end = i + 1;
                while (end < s.length() && s.charAt(end) != '"') end += s.charAt(end) == '\\' ? 2 : 1;
                if (end >= s.length()) throw new IllegalArgumentException("unterminated string");
                sb.append(s, i, end + 1);
                i = end + 1;
            } else if (c == '\'') {
                sb.append('"');
                i++;
                while (i < s.length() && s.charAt(i) != '\'') {
                    char d = s.charAt(i);
                    if (d == '\\' && i + 1 < s.length()) {
                        char e = s.charAt(i + 1);
                        if (e == '\'') sb.append('\'');
                        else sb.append('\\').append(e);
                        i += 2;
                    } else {
                        if (d == '"') sb.append("\\\"");
                        else sb.append(d);
                        i++;
                    }
                }
                if (i >= s.length()) throw new IllegalArgumentException("unterminated string");
                sb.append('"');
                i++;
            } else if (Character.isLetter(c)) {
                int end = i;
                while (end < s.length() && (Character.isLetterOrDigit(s.charAt(end)) || s.charAt(end) == '_')) end++;
                String word = s.substring(i, end);
                sb.append(switch (word) {
                    case "True" -> "true";
                    case "False" -> "false";
                    case "None" -> "null";
                    default -> word;
                });
                i = end;
            } else {
                sb.append(c);
                i++;
            }
        }
        return sb.toString();
    }
}
