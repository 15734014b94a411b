{{/* Prefix of every object name: the release name (headless Services are <release>-<target>-headless). */}}
{{- define "gantry.prefix" -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{- define "gantry.targetNames" -}}
{{- list "log" "settlement" "approvals" "webhooks" | toJson -}}
{{- end -}}

{{/* The targets that call log and webhooks through the outbox relay. */}}
{{- define "gantry.relayTargets" -}}
{{- list "settlement" "approvals" | toJson -}}
{{- end -}}

{{- define "gantry.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: gantry
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: gantry
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "component" "log"). */}}
{{- define "gantry.selectorLabels" -}}
app.kubernetes.io/name: gantry
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* The NetworkPolicy peer of this release's `helm test` Pods (templates/tests.yaml). */}}
{{- define "gantry.testClients" -}}
podSelector:
  matchLabels:
    app.kubernetes.io/instance: {{ .Release.Name }}
    app.kubernetes.io/component: helm-test
{{- end -}}

{{- define "gantry.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* DNS names a component's Services answer to: short, namespaced and FQDN, ClusterIP and headless. */}}
{{- define "gantry.dnsNames" -}}
{{- $ns := .root.Release.Namespace -}}
{{- $names := list -}}
{{- range $svc := list .name (printf "%s-headless" .name) -}}
{{- $names = concat $names (list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns)) -}}
{{- end -}}
{{- toJson $names -}}
{{- end -}}

{{- define "gantry.externalAuth" -}}
{{- if or .Values.auth.existingSecret .Values.auth.jwksUrl }}true{{ end -}}
{{- end -}}

{{/* The chart's dev key (Secret <release>-dev-jwt, written by the dev-key init container): every
microservices pod, and the monolith when the operator runs beside it, must trust the same key. */}}
{{- define "gantry.sharedDevKey" -}}
{{- if and .Values.auth.generateDevKey (or (eq .Values.mode "microservices") .Values.operator.enabled) }}true{{ end -}}
{{- end -}}

{{/* Checks what the schema cannot: combinations of values. */}}
{{- define "gantry.validate" -}}
{{- $sources := 0 -}}
{{- if .Values.auth.existingSecret }}{{ $sources = add1 $sources }}{{ end -}}
{{- if .Values.auth.jwksUrl }}{{ $sources = add1 $sources }}{{ end -}}
{{- if .Values.auth.generateDevKey }}{{ $sources = add1 $sources }}{{ end -}}
{{- if ne $sources 1 -}}
{{- fail "auth: set exactly one of auth.existingSecret (a JWKS Secret), auth.jwksUrl, or auth.generateDevKey=true (development)" -}}
{{- end -}}
{{- if and (include "gantry.externalAuth" .) .Values.events.enabled (not .Values.auth.serviceTokenSecret) -}}
{{- fail "auth.serviceTokenSecret: with an external issuer the relays need a service token (a JWT with scopes log.append webhooks.publish) from a Secret; set auth.serviceTokenSecret, or events.enabled=false" -}}
{{- end -}}
{{- if and (include "gantry.externalAuth" .) .Values.operator.enabled (not .Values.operator.serviceTokenSecret) (not .Values.auth.serviceTokenSecret) -}}
{{- fail "operator.serviceTokenSecret: with an external issuer the operator needs a service token (a JWT with scopes webhooks.read webhooks.manage flags.read flags.write) from a Secret; set operator.serviceTokenSecret (or auth.serviceTokenSecret with those scopes too), or operator.enabled=false" -}}
{{- end -}}
{{- with .Values.operator.leaderElection -}}
{{- if ge (int .renewDeadlineMs) (int .leaseDurationMs) -}}
{{- fail "operator.leaderElection: renewDeadlineMs must be less than leaseDurationMs (a leader gives up before a standby may take over)" -}}
{{- end -}}
{{- end -}}
{{- if and (eq .Values.mode "microservices") (not .Values.database.url) (not .Values.database.existingSecret) -}}
{{- fail "database: microservices need PostgreSQL; set database.url or database.existingSecret" -}}
{{- end -}}
{{- $startupBudgetMs := mul .Values.probes.startup.periodSeconds .Values.probes.startup.failureThreshold 1000 -}}
{{- if and (eq .Values.mode "microservices") (le (int64 $startupBudgetMs) (int64 .Values.database.startupTimeoutMs)) -}}
{{- fail (printf "probes.startup: periodSeconds × failureThreshold (%d s) must exceed database.startupTimeoutMs (%d s), or kubelet restarts pods still waiting for their database before they give up with a message; raise probes.startup.failureThreshold or lower database.startupTimeoutMs" (div $startupBudgetMs 1000) (div (int64 .Values.database.startupTimeoutMs) 1000)) -}}
{{- end -}}
{{- end -}}

{{/*
One pod spec: (dict "root" $ "component" "log" "args" (list ...) "cfg" <target values> "tlsSecret" "..."
"env" (list of env vars) "dataVolume" <volume> "devKeyInit" bool "replicas" int).
"relay": mounts auth.serviceTokenSecret as GANTRY_PEERS_TOKEN_FILE; "tokenSecret" (dict "name" "key")
mounts that Secret instead. "clientOnly": no gRPC listener (the operator: health port only).
"kubeApi": mounts the ServiceAccount token (only the operator talks to the API server).
*/}}
{{- define "gantry.podSpec" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $prefix := include "gantry.prefix" $root -}}
{{- $resources := .cfg.resources | default $v.defaultResources -}}
{{- $tokenSecret := ternary $v.auth.serviceTokenSecret "" (not (empty .relay)) -}}
{{- $tokenKey := $v.auth.serviceTokenSecretKey -}}
{{- with .tokenSecret }}{{ $tokenSecret = .name }}{{ $tokenKey = .key }}{{ end -}}
serviceAccountName: {{ printf "%s-%s" $prefix .component }}
automountServiceAccountToken: {{ not (empty .kubeApi) }}
enableServiceLinks: false
terminationGracePeriodSeconds: {{ add (div $v.shutdownGraceMs 1000) $v.terminationGraceMarginSeconds }}
securityContext:
  {{- toYaml $v.podSecurityContext | nindent 2 }}
{{- with $v.image.pullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if and $v.topologySpread.enabled (gt (int .replicas) 1) }}
topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: {{ $v.topologySpread.topologyKey }}
    whenUnsatisfiable: {{ $v.topologySpread.whenUnsatisfiable }}
    labelSelector:
      matchLabels:
        {{- include "gantry.selectorLabels" (dict "root" $root "component" .component) | nindent 8 }}
{{- end }}
{{- with .cfg.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .cfg.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .cfg.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if .devKeyInit }}
initContainers:
  # Lays out the chart's dev signing key and its JWKS where the process looks for its dev key
  # (GANTRY_DATA_DIR/jwt): templates cannot derive a public JWK, so `gantry dev-key import` does.
  # kubelet expands $(DEV_KEY_FILE) and $(DATA_DIR) in args from the env below.
  - name: dev-key
    image: {{ include "gantry.image" $root }}
    imagePullPolicy: {{ $v.image.pullPolicy }}
    args: [dev-key, import, --key-file=$(DEV_KEY_FILE), --data-dir=$(DATA_DIR)]
    env:
      - name: DATA_DIR
        value: /var/lib/gantry
      - name: DEV_KEY_FILE
        value: /etc/gantry/dev-key/signing-key.pem
    securityContext:
      {{- toYaml $v.securityContext | nindent 6 }}
    resources:
      requests: {cpu: 10m, memory: 64Mi}
      limits: {memory: 128Mi}
    volumeMounts:
      - {name: data, mountPath: /var/lib/gantry}
      - {name: dev-key, mountPath: /etc/gantry/dev-key, readOnly: true}
{{- end }}
containers:
  - name: gantry
    image: {{ include "gantry.image" $root }}
    imagePullPolicy: {{ $v.image.pullPolicy }}
    args:
      {{- toYaml .args | nindent 6 }}
    ports:
      {{- if not .clientOnly }}
      - {name: grpc, containerPort: 7443, protocol: TCP}
      {{- end }}
      - {name: health, containerPort: 7080, protocol: TCP}
    env:
      {{- if not .clientOnly }}
      - {name: GANTRY_PORT, value: "7443"}
      {{- end }}
      - {name: GANTRY_HEALTH_PORT, value: "7080"}
      - {name: GANTRY_DATA_DIR, value: /var/lib/gantry}
      - {name: GANTRY_TLS_CA_FILE, value: /etc/gantry/tls/ca.crt}
      - {name: GANTRY_TLS_CERT_FILE, value: /etc/gantry/tls/tls.crt}
      - {name: GANTRY_TLS_KEY_FILE, value: /etc/gantry/tls/tls.key}
      - {name: GANTRY_TLS_RELOAD_INTERVAL_MS, value: {{ $v.tls.reloadIntervalMs | quote }}}
      - {name: GANTRY_JWT_ISSUER, value: {{ $v.auth.issuer | quote }}}
      - {name: GANTRY_JWT_AUDIENCE, value: {{ $v.auth.audience | quote }}}
      {{- if $v.auth.existingSecret }}
      - {name: GANTRY_JWT_JWKS_FILE, value: {{ printf "/etc/gantry/jwks/%s" $v.auth.existingSecretKey | quote }}}
      {{- else if $v.auth.jwksUrl }}
      - {name: GANTRY_JWT_JWKS_URL, value: {{ $v.auth.jwksUrl | quote }}}
      {{- end }}
      {{- if $tokenSecret }}
      - {name: GANTRY_PEERS_TOKEN_FILE, value: {{ printf "/etc/gantry/peer-token/%s" $tokenKey | quote }}}
      {{- end }}
      {{- if not .clientOnly }}
      - {name: GANTRY_RATE_LIMIT_STORE, value: {{ .rateLimitStore | quote }}}
      - {name: GANTRY_RATE_LIMIT_POINTS, value: {{ $v.rateLimit.points | quote }}}
      - {name: GANTRY_RATE_LIMIT_WINDOW_SEC, value: {{ $v.rateLimit.windowSec | quote }}}
      {{- end }}
      - {name: GANTRY_LOG_LEVEL, value: {{ $v.telemetry.logLevel | quote }}}
      {{- with $v.telemetry.otlpEndpoint }}
      - {name: GANTRY_OTLP_ENDPOINT, value: {{ . | quote }}}
      {{- end }}
      - {name: GANTRY_SHUTDOWN_GRACE_MS, value: {{ $v.shutdownGraceMs | quote }}}
      {{- if not .clientOnly }}
      - {name: GANTRY_EVENTS_ENABLED, value: {{ $v.events.enabled | quote }}}
      - {name: GANTRY_MAX_CONNECTION_AGE_MS, value: {{ $v.grpc.maxConnectionAgeMs | int64 | quote }}}
      - {name: GANTRY_MAX_CONNECTION_AGE_GRACE_MS, value: {{ $v.grpc.maxConnectionAgeGraceMs | int64 | quote }}}
      {{- end }}
      {{- with .env }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
      {{- range $name, $value := $v.extraEnv }}
      - {name: {{ $name }}, value: {{ $value | quote }}}
      {{- end }}
    # Each probe asks its own grpc.health.v1 name (docs/helm.md, Probes): startup until start-up is
    # done (a late database included), readiness while the database answers, liveness whatever the
    # database does, so an outage takes pods out of Services but never restarts them.
    startupProbe:
      grpc: {port: 7080, service: startup}
      periodSeconds: {{ $v.probes.startup.periodSeconds }}
      failureThreshold: {{ $v.probes.startup.failureThreshold }}
    readinessProbe:
      grpc: {port: 7080, service: readiness}
      periodSeconds: {{ $v.probes.readiness.periodSeconds }}
      failureThreshold: {{ $v.probes.readiness.failureThreshold }}
    livenessProbe:
      grpc: {port: 7080, service: liveness}
      periodSeconds: {{ $v.probes.liveness.periodSeconds }}
      failureThreshold: {{ $v.probes.liveness.failureThreshold }}
    {{- with $resources }}
    resources:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    securityContext:
      {{- toYaml $v.securityContext | nindent 6 }}
    volumeMounts:
      - {name: tmp, mountPath: /tmp}
      - {name: data, mountPath: /var/lib/gantry}
      - {name: tls, mountPath: /etc/gantry/tls, readOnly: true}
      {{- if $v.auth.existingSecret }}
      - {name: jwks, mountPath: /etc/gantry/jwks, readOnly: true}
      {{- end }}
      {{- if $tokenSecret }}
      - {name: peer-token, mountPath: /etc/gantry/peer-token, readOnly: true}
      {{- end }}
      {{- with .extraMounts }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
volumes:
  - name: tmp
    emptyDir: {sizeLimit: 256Mi}
  {{- toYaml (list .dataVolume) | nindent 2 }}
  - name: tls
    secret: {secretName: {{ .tlsSecret }}, defaultMode: 288}
  {{- if $v.auth.existingSecret }}
  - name: jwks
    secret: {secretName: {{ $v.auth.existingSecret }}, defaultMode: 288}
  {{- end }}
  {{- if $tokenSecret }}
  - name: peer-token
    secret: {secretName: {{ $tokenSecret }}, defaultMode: 288}
  {{- end }}
  {{- if .devKeyInit }}
  - name: dev-key
    secret: {secretName: {{ printf "%s-dev-jwt" $prefix }}, defaultMode: 288}
  {{- end }}
  {{- with .extraVolumes }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end -}}

{{/* Metadata of one component's object: (dict "root" $ "name" "..." "component" "log"). */}}
{{- define "gantry.metadata" -}}
metadata:
  name: {{ .name }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "gantry.labels" .root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/*
A rolling Deployment of one component: (dict "root" $ "name" "..." "component" "log" "pod" <gantry.podSpec
arguments>), "replicas" int unless an HPA sets them.
*/}}
{{- define "gantry.deployment" -}}
apiVersion: apps/v1
kind: Deployment
{{ include "gantry.metadata" . }}
spec:
  {{- if hasKey . "replicas" }}
  replicas: {{ .replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  strategy:
    type: RollingUpdate
    rollingUpdate: {maxUnavailable: 0, maxSurge: 1}
  selector:
    matchLabels:
      {{- include "gantry.selectorLabels" (dict "root" .root "component" .component) | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "gantry.labels" .root | nindent 8 }}
        app.kubernetes.io/component: {{ .component }}
    spec:
      {{- include "gantry.podSpec" .pod | nindent 6 }}
{{- end -}}

{{/* At most one pod of a component down at a time: (dict "root" $ "name" "..." "component" "log"). */}}
{{- define "gantry.pdb" -}}
apiVersion: policy/v1
kind: PodDisruptionBudget
{{ include "gantry.metadata" . }}
spec:
  maxUnavailable: 1
  selector:
    matchLabels:
      {{- include "gantry.selectorLabels" (dict "root" .root "component" .component) | nindent 6 }}
{{- end -}}

{{/*
Ingress of one component: the plaintext health port from anywhere (kubelet probes), gRPC (7443) only
from "from" (NetworkPolicyPeers; none: no gRPC ingress). (dict "root" $ "name" "..." "component" "log" "from" (list ...)).
*/}}
{{- define "gantry.networkPolicy" -}}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
{{ include "gantry.metadata" . }}
spec:
  podSelector:
    matchLabels:
      {{- include "gantry.selectorLabels" (dict "root" .root "component" .component) | nindent 6 }}
  policyTypes: [Ingress]
  ingress:
    - ports: [{port: 7080, protocol: TCP}]
    {{- with .from }}
    - ports: [{port: 7443, protocol: TCP}]
      from:
        {{- toYaml . | nindent 8 }}
    {{- end }}
{{- end -}}

{{/* The NetworkPolicy peer of this release's operator pods. */}}
{{- define "gantry.operatorClients" -}}
podSelector:
  matchLabels:
    {{- include "gantry.selectorLabels" (dict "root" . "component" "operator") | nindent 4 }}
{{- end -}}
