{{/* Names: <release>-lightmesh (or the release name when it holds "lightmesh"), then -<role>. */}}
{{- define "lightmesh.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "lightmesh.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Labels of every object; selector labels of a role (dict "root" $ "role" "decode"). */}}
{{- define "lightmesh.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: lightmesh
{{ include "lightmesh.selectorLabels" . }}
{{- end -}}

{{- define "lightmesh.selectorLabels" -}}
app.kubernetes.io/name: {{ include "lightmesh.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .role }}
{{- end -}}

{{/* A cluster-internal DNS name of a Service of this release. */}}
{{- define "lightmesh.svcHost" -}}
{{- printf "%s.%s.svc.%s" .name .root.Release.Namespace .root.Values.clusterDomain -}}
{{- end -}}

{{- define "lightmesh.kafkaBootstrap" -}}
{{- if .Values.kafka.enabled -}}
{{- include "lightmesh.svcHost" (dict "root" . "name" (printf "%s-kafka" (include "lightmesh.fullname" .))) }}:9092
{{- else -}}
{{- required "kafka.bootstrapServers is required when kafka.enabled is false" .Values.kafka.bootstrapServers -}}
{{- end -}}
{{- end -}}

{{/* Discovery: every ready pod behind a headless Service (io.lightmesh.mesh.PeerSet's dns:name:port). */}}
{{- define "lightmesh.decodePeers" -}}
dns:{{ include "lightmesh.svcHost" (dict "root" . "name" (printf "%s-decode" (include "lightmesh.fullname" .))) }}:{{ .Values.decode.grpcPort }}
{{- end -}}

{{- define "lightmesh.expertPeers" -}}
dns:{{ include "lightmesh.svcHost" (dict "root" . "name" (printf "%s-experts" (include "lightmesh.fullname" .))) }}:{{ .Values.experts.grpcPort }}
{{- end -}}

{{/* The router's placement controller for the workers (Placement.Watch), through a Service that lists the router pod
     before it is ready: the router's readiness waits for workers that wait for the placement. */}}
{{- define "lightmesh.placementTarget" -}}
{{ include "lightmesh.svcHost" (dict "root" . "name" (printf "%s-placement" (include "lightmesh.fullname" .))) }}:{{ .Values.router.grpcPort }}
{{- end -}}

{{/* Whether the router runs the placement controller (expert shards on and placement.controller). */}}
{{- define "lightmesh.controllerOn" -}}
{{- if and .Values.experts.enabled .Values.placement.controller -}}true{{- end -}}
{{- end -}}

{{/* Where a prefill or decode worker's experts are: the controller's placement, or the shards it discovers itself. */}}
{{- define "lightmesh.workerExpertsEnv" -}}
{{- if include "lightmesh.controllerOn" . }}
# the placement the router's controller publishes (experts re-placed by load, failed shards replaced)
- name: LIGHTMESH_PLACEMENT
  value: {{ include "lightmesh.placementTarget" . | quote }}
{{- else if .Values.experts.enabled }}
# discovery: every ready shard behind the headless Service, asked what it holds as shards come and go
- name: LIGHTMESH_EXPERTS
  value: {{ include "lightmesh.expertPeers" . | quote }}
{{- end }}
{{- end -}}

{{/* Settings that are not a role's own: refused combinations, named. */}}
{{- define "lightmesh.validate" -}}
{{- if and (include "lightmesh.controllerOn" .) (or (gt (int .Values.router.replicas) 1) .Values.router.autoscaling.enabled) -}}
{{- fail "the placement controller runs in the router, one per router pod: with placement.controller true keep router.replicas 1 and router.autoscaling off, or set placement.controller false" -}}
{{- end -}}
{{- if and .Values.tls.enabled .Values.tls.mesh.enabled -}}
{{- fail "tls.enabled and tls.mesh.enabled: with mesh TLS the router serves HTTPS on its HTTP port with the mesh certificate; turn tls.enabled off" -}}
{{- end -}}
{{- end -}}

{{- define "lightmesh.image" -}}
{{- $repo := printf "%s-%s" .root.Values.image.repository .image -}}
{{- if .root.Values.image.registry -}}{{- $repo = printf "%s/%s" (trimSuffix "/" .root.Values.image.registry) $repo -}}{{- end -}}
{{- printf "%s:%s" $repo (default .root.Chart.AppVersion .root.Values.image.tag) -}}
{{- end -}}

{{- define "lightmesh.apiKeySecret" -}}
{{- if .Values.apiKey.existingSecret -}}{{ .Values.apiKey.existingSecret }}{{- else -}}{{ include "lightmesh.fullname" . }}-api-key{{- end -}}
{{- end -}}

{{- define "lightmesh.apiKeyEnabled" -}}
{{- if or .Values.apiKey.value .Values.apiKey.existingSecret -}}true{{- end -}}
{{- end -}}

{{/* lightmesh.* settings as LIGHTMESH_* variables (maxInFlight and max-in-flight both give LIGHTMESH_MAX_IN_FLIGHT). */}}
{{- define "lightmesh.settingsEnv" -}}
{{- range $k, $v := . }}
- name: LIGHTMESH_{{ $k | replace "-" "_" | snakecase | upper }}
  value: {{ $v | toString | quote }}
{{- end }}
{{- end -}}

{{/*
The pod template of a role. dict:
  root: $, role: router|prefill|decode|experts, image: router|prefill|decode|expert, v: the role's values,
  env: the role's own variables (a YAML list as a string), ports: (list (dict "name" "grpc" "port" 9000) ...)
*/}}
{{- define "lightmesh.podTemplate" -}}
{{- $root := .root -}}
{{- $v := .v -}}
metadata:
  labels:
    {{- include "lightmesh.selectorLabels" (dict "root" $root "role" .role) | nindent 4 }}
    {{- with $v.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    {{- if $root.Values.metrics.podAnnotations }}
    prometheus.io/scrape: "true"
    prometheus.io/port: {{ $v.httpPort | quote }}
    prometheus.io/path: /q/metrics
    {{- if and (eq .role "router") $root.Values.tls.mesh.enabled }}
    prometheus.io/scheme: https
    {{- end }}
    {{- end }}
    {{- if and (include "lightmesh.apiKeyEnabled" $root) $root.Values.apiKey.value }}
    checksum/api-key: {{ $root.Values.apiKey.value | sha256sum | trunc 16 }}
    {{- end }}
    {{- with $v.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  {{- with $root.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml (merge (deepCopy ($v.podSecurityContext | default dict)) $root.Values.podSecurityContext) | nindent 4 }}
  {{- with $v.runtimeClassName }}
  runtimeClassName: {{ . }}
  {{- end }}
  {{- with $v.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  {{- with $v.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  # SIGTERM: the service drains (decode sequences resume elsewhere, prefill leaves its group) before it exits
  terminationGracePeriodSeconds: 60
  containers:
    - name: {{ .role }}
      image: {{ include "lightmesh.image" (dict "root" $root "image" .image) }}
      imagePullPolicy: {{ $root.Values.image.pullPolicy }}
      env:
        - name: POD_NAME
          valueFrom: {fieldRef: {fieldPath: metadata.name}}
        - name: POD_IP
          valueFrom: {fieldRef: {fieldPath: status.podIP}}
        - name: LIGHTMESH_MODEL
          value: {{ printf "%s/%s" (trimSuffix "/" $root.Values.model.mountPath) $root.Values.model.subPath | trimSuffix "/" | quote }}
        {{- if hasKey $v "backend" }}
        - name: LIGHTMESH_BACKEND
          value: {{ if and (gt (int $v.gpu) 0) (eq $v.backend "auto") }}opencl{{ else }}{{ $v.backend }}{{ end }}
        {{- end }}
        - name: LIGHTMESH_HTTP_PORT
          value: {{ $v.httpPort | quote }}
        {{- if gt (int $v.gpu) 0 }}
        # the driver's cache of compiled OpenCL programs (values kernelCache): a warm one saves ~70 s of start
        - name: CUDA_CACHE_PATH
          value: {{ if $root.Values.kernelCache.hostPath }}/var/cache/lightmesh/kernels{{ else }}/tmp/.nv/ComputeCache{{ end }}
        - name: CUDA_CACHE_MAXSIZE
          value: {{ $root.Values.kernelCache.maxSizeBytes | int64 | quote }}
        {{- end }}
        {{- with $v.jvmOptions }}
        - name: JAVA_TOOL_OPTIONS
          value: {{ . | quote }}
        {{- end }}
        {{- if $root.Values.otel.endpoint }}
        - name: OTEL_EXPORTER_OTLP_ENDPOINT
          value: {{ $root.Values.otel.endpoint | quote }}
        - name: OTEL_EXPORTER_OTLP_PROTOCOL
          value: {{ $root.Values.otel.protocol | quote }}
        {{- end }}
        {{- if $root.Values.tls.mesh.enabled }}
        # mutual TLS between the services (io.lightmesh.mesh.MeshTls)
        - name: LIGHTMESH_TLS_CERT
          value: /etc/lightmesh/mesh-tls/tls.crt
        - name: LIGHTMESH_TLS_KEY
          value: /etc/lightmesh/mesh-tls/tls.key
        - name: LIGHTMESH_TLS_CA
          value: /etc/lightmesh/mesh-tls/ca.crt
        - name: LIGHTMESH_TLS_VERIFY_HOSTNAME
          value: {{ $root.Values.tls.mesh.verifyHostname | quote }}
        {{- end }}
        {{- .env | nindent 8 }}
        {{- include "lightmesh.settingsEnv" $v.settings | nindent 8 }}
        {{- with $v.env }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      ports:
        {{- range .ports }}
        - name: {{ .name }}
          containerPort: {{ .port }}
          protocol: TCP
        {{- end }}
      {{- /* under mesh TLS the router's HTTP port serves HTTPS only (RouterTlsConfigSource); kubelet does not verify it */}}
      {{- $scheme := ternary "HTTPS" "HTTP" (and (eq .role "router") $root.Values.tls.mesh.enabled) }}
      startupProbe:
        httpGet: {path: /q/health/live, port: http, scheme: {{ $scheme }}}
        {{- toYaml $v.probes.startup | nindent 8 }}
      livenessProbe:
        httpGet: {path: /q/health/live, port: http, scheme: {{ $scheme }}}
        {{- toYaml $v.probes.liveness | nindent 8 }}
      readinessProbe:
        httpGet: {path: /q/health/ready, port: http, scheme: {{ $scheme }}}
        {{- toYaml $v.probes.readiness | nindent 8 }}
      {{- $res := deepCopy ($v.resources | default dict) }}
      {{- if gt (int $v.gpu) 0 }}
      {{- $_ := set $res "limits" (merge (dict "nvidia.com/gpu" (int $v.gpu)) ($res.limits | default dict)) }}
      {{- end }}
      resources:
        {{- toYaml $res | nindent 8 }}
      securityContext:
        {{- toYaml (merge (deepCopy ($v.securityContext | default dict)) $root.Values.securityContext) | nindent 8 }}
      volumeMounts:
        - name: model
          mountPath: {{ $root.Values.model.mountPath }}
          readOnly: true
        # a read-only root: Vert.x, the JVM and the OpenCL compilers' caches write here (HOME=/tmp in the image)
        - name: tmp
          mountPath: /tmp
        {{- if and (gt (int $v.gpu) 0) $root.Values.kernelCache.hostPath }}
        - name: kernel-cache
          mountPath: /var/cache/lightmesh/kernels
        {{- end }}
        {{- if and (eq .role "router") $root.Values.tls.enabled }}
        - name: tls
          mountPath: /etc/lightmesh/tls
          readOnly: true
        {{- end }}
        {{- if $root.Values.tls.mesh.enabled }}
        - name: mesh-tls
          mountPath: /etc/lightmesh/mesh-tls
          readOnly: true
        {{- end }}
  volumes:
    - name: model
      {{- if eq $root.Values.model.source "pvc" }}
      persistentVolumeClaim:
        claimName: {{ $root.Values.model.pvc.claimName }}
        readOnly: true
      {{- else if eq $root.Values.model.source "hostPath" }}
      hostPath:
        path: {{ $root.Values.model.hostPath.path }}
        type: {{ $root.Values.model.hostPath.type }}
      {{- else }}
      image:
        reference: {{ required "model.image.reference is required when model.source is image" $root.Values.model.image.reference }}
        pullPolicy: {{ $root.Values.model.image.pullPolicy }}
      {{- end }}
    - name: tmp
      emptyDir: {}
    {{- if and (gt (int $v.gpu) 0) $root.Values.kernelCache.hostPath }}
    - name: kernel-cache
      hostPath:
        path: {{ $root.Values.kernelCache.hostPath }}
        type: DirectoryOrCreate
    {{- end }}
    {{- if and (eq .role "router") $root.Values.tls.enabled }}
    - name: tls
      secret:
        secretName: {{ required "tls.secretName is required when tls.enabled is true" $root.Values.tls.secretName }}
    {{- end }}
    {{- if $root.Values.tls.mesh.enabled }}
    - name: mesh-tls
      secret:
        secretName: {{ required "tls.mesh.secretName is required when tls.mesh.enabled is true" $root.Values.tls.mesh.secretName }}
    {{- end }}
{{- end -}}

{{/* A PodDisruptionBudget of a role: dict root, role, v. */}}
{{- define "lightmesh.pdb" -}}
{{- if .v.pdb.enabled }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "lightmesh.fullname" .root }}-{{ .role }}
  labels:
    {{- include "lightmesh.labels" . | nindent 4 }}
spec:
  {{- if hasKey .v.pdb "minAvailable" }}
  minAvailable: {{ .v.pdb.minAvailable }}
  {{- else }}
  maxUnavailable: {{ .v.pdb.maxUnavailable | default 1 }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "lightmesh.selectorLabels" . | nindent 6 }}
{{- end }}
{{- end -}}
