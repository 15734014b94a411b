{{/* The chart's name, app.kubernetes.io/name of every object: nameOverride, else the chart's own. */}}
{{- define "gantry.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The prefix of every object name: fullnameOverride; else the release name, followed by nameOverride
when that is set and not already in it. With neither it is the release name alone (not bitnami's
<release>-<chart>), as before these values existed, so installs upgrade in place. Cut at 40 rather
than 63: the longest name made from it, <fullname>-approvals-test-health, adds 22 characters and
must stay a valid DNS label; the release-name prefix was always cut there.
*/}}
{{- define "gantry.fullname" -}}
{{- $name := .Release.Name -}}
{{- if .Values.fullnameOverride -}}
{{- $name = .Values.fullnameOverride -}}
{{- else if and .Values.nameOverride (not (contains .Values.nameOverride .Release.Name)) -}}
{{- $name = printf "%s-%s" .Release.Name .Values.nameOverride -}}
{{- end -}}
{{- $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{/*
Object names. Every name and every reference to one (a Secret mounted, a Service in a peer address or a
certificate, a RoleBinding's subject) comes from these, so an override renames both alike.
*/}}
{{/* One component's objects (Deployment, ClusterIP Service, ServiceAccount, PDB, HPA, NetworkPolicy):
(dict "root" $ "component" "log"). The monolith is the component "gantry". */}}
{{- define "gantry.componentName" -}}
{{- printf "%s-%s" (include "gantry.fullname" .root) .component -}}
{{- end -}}

{{/* A component's values (targets.<t>, monolithic for "gantry", operator, gateway) as JSON: (dict "root" $ "component" "log"). */}}
{{- define "gantry.componentValues" -}}
{{- $v := .root.Values -}}
{{- if eq .component "operator" -}}
{{- toJson $v.operator -}}
{{- else if eq .component "gateway" -}}
{{- toJson $v.gateway -}}
{{- else if eq .component "gantry" -}}
{{- toJson $v.monolithic -}}
{{- else -}}
{{- toJson (index $v.targets .component) -}}
{{- end -}}
{{- end -}}

{{/*
The ServiceAccount a component's pods run as: (dict "root" $ "component" "log"). Its
serviceAccount.name, else <fullname>-<component> when the chart creates them, else the namespace's default.
*/}}
{{- define "gantry.serviceAccountName" -}}
{{- $name := (include "gantry.componentValues" . | fromJson).serviceAccount.name -}}
{{- if .root.Values.serviceAccount.create -}}
{{- $name | default (include "gantry.componentName" .) -}}
{{- else -}}
{{- $name | default "default" -}}
{{- end -}}
{{- end -}}

{{/*
A component's ServiceAccount, unless serviceAccount.create is off: (dict "root" $ "component" "log"),
"kubeApi" for the one pod that calls the API server (the operator), whose token is not switched off here.
Annotations: the component's serviceAccount.annotations over the global ones.
*/}}
{{- define "gantry.serviceAccount" -}}
{{- if .root.Values.serviceAccount.create -}}
{{- $annotations := merge (dict) (include "gantry.componentValues" . | fromJson).serviceAccount.annotations .root.Values.serviceAccount.annotations -}}
apiVersion: v1
kind: ServiceAccount
{{ include "gantry.metadata" (dict "root" .root "component" .component "name" (include "gantry.serviceAccountName" .) "annotations" $annotations) }}
{{- if not .kubeApi }}
automountServiceAccountToken: false
{{- end }}
{{- end -}}
{{- end -}}

{{/* A component's headless Service, for clients' dns:/// round_robin: (dict "root" $ "component" "log"). */}}
{{- define "gantry.headlessServiceName" -}}
{{- printf "%s-headless" (include "gantry.componentName" .) -}}
{{- end -}}

{{/* The Secret holding a component's certificate (chart PKI or cert-manager): (dict "root" $ "component" "log"). */}}
{{- define "gantry.tlsSecretName" -}}
{{- printf "%s-tls" (include "gantry.componentName" .) -}}
{{- end -}}

{{/* The CA's Secret, and with cert-manager its Certificate and CA Issuer. */}}
{{- define "gantry.caName" -}}
{{- printf "%s-ca" (include "gantry.fullname" .) -}}
{{- end -}}

{{/* cert-manager: the self-signed Issuer that signs the CA. */}}
{{- define "gantry.selfSignedIssuerName" -}}
{{- printf "%s-selfsigned" (include "gantry.fullname" .) -}}
{{- end -}}

{{/* The monolith's PersistentVolumeClaim (its data dir: embedded database, dev keys). */}}
{{- define "gantry.monolithClaimName" -}}
{{- printf "%s-data" (include "gantry.componentName" (dict "root" . "component" "gantry")) -}}
{{- end -}}

{{/* The Secret the chart keeps database.url in. */}}
{{- define "gantry.databaseSecretName" -}}
{{- printf "%s-database" (include "gantry.fullname" .) -}}
{{- end -}}

{{/* The development issuer's private key (auth.devIssuer): made by the keys Job, mounted by no pod. */}}
{{- define "gantry.devKeySecretName" -}}
{{- printf "%s-dev-jwt" (include "gantry.fullname" .) -}}
{{- end -}}

{{/* The log's checkpoint signing key. */}}
{{- define "gantry.logSigningKeySecretName" -}}
{{- printf "%s-log-signing-key" (include "gantry.fullname" .) -}}
{{- end -}}

{{/* The webhooks key ring the chart generates when webhooks.existingSecret is empty. */}}
{{- define "gantry.webhooksKeysSecretName" -}}
{{- printf "%s-webhooks-keys" (include "gantry.fullname" .) -}}
{{- end -}}

{{/* Where GANTRY_DATABASE_URL comes from, as JSON {name, key}: the chart's Secret when database.url is set, else database.existingSecret. */}}
{{- define "gantry.databaseSecretRef" -}}
{{- if .Values.database.url -}}
{{- dict "name" (include "gantry.databaseSecretName" .) "key" "url" | toJson -}}
{{- else -}}
{{- dict "name" .Values.database.existingSecret "key" .Values.database.existingSecretKey | toJson -}}
{{- end -}}
{{- end -}}

{{/* The Secret the chart keeps database.url in (microservices): secrets.yaml renders it, the pods' checksum/config digests it. */}}
{{- define "gantry.databaseSecret" -}}
apiVersion: v1
kind: Secret
{{ include "gantry.metadata" (dict "root" . "name" (include "gantry.databaseSecretName" .)) }}
type: Opaque
data:
  url: {{ .Values.database.url | b64enc | quote }}
{{- end -}}

{{/*
checksum/config of a pod: a digest of the data of the chart-rendered ConfigMaps and Secrets it reads
only at start (a list of manifests), so that a change to them rolls its pods. Their data only: labels
carry the chart version. Generated keys are never among them (random under `helm template`, so every
GitOps render would roll every pod), nor what the process re-reads (certificates, JWKS, tokens).
*/}}
{{- define "gantry.configChecksum" -}}
{{- $data := list -}}
{{- range . }}{{ $data = append $data (pick (fromYaml .) "data" "stringData") }}{{ end -}}
{{- toJson $data | sha256sum -}}
{{- end -}}

{{/* The webhooks key ring, as JSON {name, key}: webhooks.existingSecret, else the chart's. */}}
{{- define "gantry.webhooksKeysRef" -}}
{{- if .Values.webhooks.existingSecret -}}
{{- dict "name" .Values.webhooks.existingSecret "key" .Values.webhooks.existingSecretKey | toJson -}}
{{- else -}}
{{- dict "name" (include "gantry.webhooksKeysSecretName" .) "key" "keys" | toJson -}}
{{- end -}}
{{- end -}}

{{/* gRPC over mTLS: every serving component's listener (GANTRY_LISTEN_PORT), its Services and NetworkPolicies. */}}
{{- define "gantry.grpcPort" -}}7443{{- end -}}

{{/* The HTTP/JSON gateway's HTTPS listener (GANTRY_GATEWAY_PORT), in the gateway's pods and the monolith. */}}
{{- define "gantry.gatewayPort" -}}8443{{- end -}}

{{/*
The gateway's settings as env (a list), for the pod that runs it (the gateway's, or the monolith's):
(dict "root" $). Its addresses of the services come from the caller (microservices) or are this
process (monolithic).
*/}}
{{- define "gantry.gatewayEnv" -}}
{{- $g := .root.Values.gateway -}}
{{- $env := list (dict "name" "GANTRY_GATEWAY_PORT" "value" (include "gantry.gatewayPort" .root)) -}}
{{- $env = append $env (dict "name" "GANTRY_GATEWAY_MAX_REQUEST_BYTES" "value" ($g.maxRequestBytes | int64 | toString)) -}}
{{- $env = append $env (dict "name" "GANTRY_GATEWAY_REQUEST_TIMEOUT_MS" "value" ($g.requestTimeoutMs | int64 | toString)) -}}
{{- $env = append $env (dict "name" "GANTRY_GATEWAY_STREAM_MAX_DURATION_MS" "value" ($g.streamMaxDurationMs | int64 | toString)) -}}
{{- $env = append $env (dict "name" "GANTRY_GATEWAY_MAX_CONCURRENT_STREAMS" "value" ($g.maxConcurrentStreams | int64 | toString)) -}}
{{- with $g.corsAllowedOrigins -}}
{{- $env = append $env (dict "name" "GANTRY_GATEWAY_CORS_ALLOWED_ORIGINS" "value" (join "," .)) -}}
{{- end -}}
{{- toJson $env -}}
{{- end -}}

{{/* The Service the gateway's Ingress and HTTPRoute send to: the gateway's own, or the monolith's. */}}
{{- define "gantry.gatewayServiceName" -}}
{{- include "gantry.componentName" (dict "root" . "component" (ternary "gantry" "gateway" (eq .Values.mode "monolithic"))) -}}
{{- end -}}

{{/* Plaintext grpc.health.v1 for kubelet's probes (GANTRY_LISTEN_HEALTH_PORT), in every pod. */}}
{{- define "gantry.healthPort" -}}7080{{- end -}}

{{/* A Service's cluster DNS name: (dict "root" $ "service" "<Service name>"). */}}
{{- define "gantry.serviceHost" -}}
{{- printf "%s.%s.svc.cluster.local" .service .root.Release.Namespace -}}
{{- end -}}

{{/*
What a client in the release dials for a component (GANTRY_PEERS_<COMPONENT>_ADDRESS): dns:/// round_robin
over the ready pods of its headless Service; in monolithic mode every component is the monolith's
Service. (dict "root" $ "component" "log").
*/}}
{{- define "gantry.peerAddress" -}}
{{- $service := include "gantry.headlessServiceName" . -}}
{{- if eq .root.Values.mode "monolithic" -}}
{{- $service = include "gantry.componentName" (dict "root" .root "component" "gantry") -}}
{{- end -}}
{{- printf "dns:///%s:%s" (include "gantry.serviceHost" (dict "root" .root "service" $service)) (include "gantry.grpcPort" .root) -}}
{{- end -}}

{{- define "gantry.targetNames" -}}
{{- list "log" "settlement" "approvals" "webhooks" | toJson -}}
{{- end -}}

{{/* The targets that call log and webhooks through the outbox relay. */}}
{{- define "gantry.relayTargets" -}}
{{- list "settlement" "approvals" | toJson -}}
{{- end -}}

{{/* The components serving gRPC, as JSON: the monolith ("gantry"), else every enabled target. */}}
{{- define "gantry.servedComponents" -}}
{{- $served := list -}}
{{- if eq .Values.mode "monolithic" -}}
{{- $served = list "gantry" -}}
{{- else -}}
{{- range $t := include "gantry.targetNames" . | fromJsonArray -}}
{{- if (index $.Values.targets $t).enabled }}{{ $served = append $served $t }}{{ end -}}
{{- end -}}
{{- end -}}
{{- toJson $served -}}
{{- end -}}

{{/*
Labels of every object: (dict "root" $ "component" "log"); without "component" for objects that belong
to no one component (CRDs, the CA, shared keys).
*/}}
{{- define "gantry.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "gantry.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: gantry
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component, a subset of its labels: (dict "root" $ "component" "log"). */}}
{{- define "gantry.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gantry.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* A NetworkPolicyPeer selecting one component's pods of this release: (dict "root" $ "component" "operator"). */}}
{{- define "gantry.podPeer" -}}
podSelector:
  matchLabels:
    {{- include "gantry.selectorLabels" . | nindent 4 }}
{{- end -}}

{{/*
What the log and webhooks targets read besides every pod's files: the log's checkpoint key and the
webhooks key ring, as JSON {env, mounts, volumes}: (dict "root" $ "targets" (list ...)), the targets
the pod serves (others add nothing).
*/}}
{{- define "gantry.targetFiles" -}}
{{- $v := .root.Values -}}
{{- $env := list -}}
{{- $mounts := list -}}
{{- $volumes := list -}}
{{- if has "log" .targets -}}
{{- $env = append $env (dict "name" "GANTRY_LOG_ORIGIN" "value" $v.log.origin) -}}
{{- $env = append $env (dict "name" "GANTRY_LOG_SIGNING_KEY_FILE" "value" "/etc/gantry/log/signing-key.pem") -}}
{{- $mounts = append $mounts (dict "name" "log-signing-key" "mountPath" "/etc/gantry/log" "readOnly" true) -}}
{{- $volumes = append $volumes (dict "name" "log-signing-key" "secret" (dict "secretName" (include "gantry.logSigningKeySecretName" .root) "defaultMode" 288)) -}}
{{- end -}}
{{- if has "webhooks" .targets -}}
{{- $keys := include "gantry.webhooksKeysRef" .root | fromJson -}}
{{- $env = append $env (dict "name" "GANTRY_WEBHOOKS_SECRET_KEY_FILE" "value" (printf "/etc/gantry/webhooks/%s" $keys.key)) -}}
{{- with $v.webhooks.allowedCidrs -}}
{{- $env = append $env (dict "name" "GANTRY_WEBHOOKS_ALLOWED_CIDRS" "value" .) -}}
{{- end -}}
{{- with $v.webhooks.allowedPorts -}}
{{- $env = append $env (dict "name" "GANTRY_WEBHOOKS_ALLOWED_PORTS" "value" .) -}}
{{- end -}}
{{- $mounts = append $mounts (dict "name" "webhooks-keys" "mountPath" "/etc/gantry/webhooks" "readOnly" true) -}}
{{- $volumes = append $volumes (dict "name" "webhooks-keys" "secret" (dict "secretName" $keys.name "defaultMode" 288)) -}}
{{- end -}}
{{- dict "env" $env "mounts" $mounts "volumes" $volumes | toJson -}}
{{- end -}}

{{- define "gantry.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* DNS names a component's Services answer to: short, namespaced and FQDN, ClusterIP and headless. (dict "root" $ "component" "log") */}}
{{- define "gantry.dnsNames" -}}
{{- $ns := .root.Release.Namespace -}}
{{- $names := list -}}
{{- range $svc := list (include "gantry.componentName" .) (include "gantry.headlessServiceName" .) -}}
{{- $names = concat $names (list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns)) -}}
{{- end -}}
{{- toJson $names -}}
{{- end -}}

{{/* The JWKS Secret pods trust, as JSON {name, key}: auth.existingSecret, else the dev issuer's public JWKS, else none. */}}
{{- define "gantry.jwksSecretRef" -}}
{{- if .Values.auth.existingSecret -}}
{{- dict "name" .Values.auth.existingSecret "key" .Values.auth.existingSecretKey | toJson -}}
{{- else if .Values.auth.devIssuer -}}
{{- dict "name" (include "gantry.devJwksSecretName" .) "key" "jwks.json" | toJson -}}
{{- else -}}
{{- dict | toJson -}}
{{- end -}}
{{- end -}}

{{/* Checks what the schema cannot: combinations of values. */}}
{{- define "gantry.validate" -}}
{{- $sources := 0 -}}
{{- if .Values.auth.existingSecret }}{{ $sources = add1 $sources }}{{ end -}}
{{- if .Values.auth.jwksUrl }}{{ $sources = add1 $sources }}{{ end -}}
{{- if .Values.auth.devIssuer }}{{ $sources = add1 $sources }}{{ end -}}
{{- if gt $sources 1 -}}
{{- fail "auth: set at most one token issuer: auth.existingSecret (a JWKS Secret), auth.jwksUrl, or auth.devIssuer=true (development)" -}}
{{- end -}}
{{- if has .Release.Namespace .Values.operator.watchNamespaces -}}
{{- fail (printf "operator.watchNamespaces: %s is the release namespace, whose Secrets hold the platform's keys (the CA, the database URL, the key ring), which the operator must not reach; list the namespaces where tenants create Webhooks and FeatureFlags" .Release.Namespace) -}}
{{- end -}}
{{- if and .Values.operator.enabled (not .Values.serviceAccount.create) (not .Values.operator.serviceAccount.name) -}}
{{- fail "operator.serviceAccount.name: with serviceAccount.create=false name the operator's existing ServiceAccount; its Role is bound to it, and would otherwise be bound to the namespace's default ServiceAccount" -}}
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
One pod spec: (dict "root" $ "component" "log" "args" (list ...) "cfg" <target values>
"env" (list of env vars) "dataVolume" <volume> "replicas" int). Peers call each other as their
workloads, by certificate: no pod gets a token or a signing key. "clientOnly": no gRPC listener (the
operator: health port only). "extraPorts": more container ports (the gateway's https).
"kubeApi": mounts the ServiceAccount token (only the operator talks to the API server).
*/}}
{{- define "gantry.podSpec" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $component := dict "root" $root "component" .component -}}
{{- $grpcPort := include "gantry.grpcPort" $root -}}
{{- $healthPort := include "gantry.healthPort" $root -}}
{{- $resources := .cfg.resources | default $v.defaultResources -}}
{{- $jwks := include "gantry.jwksSecretRef" $root | fromJson -}}
serviceAccountName: {{ include "gantry.serviceAccountName" $component }}
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
        {{- include "gantry.selectorLabels" $component | nindent 8 }}
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
containers:
  - name: gantry
    image: {{ include "gantry.image" $root }}
    imagePullPolicy: {{ $v.image.pullPolicy }}
    args:
      {{- toYaml .args | nindent 6 }}
    ports:
      {{- if not .clientOnly }}
      - {name: grpc, containerPort: {{ $grpcPort }}, protocol: TCP}
      {{- end }}
      - {name: health, containerPort: {{ $healthPort }}, protocol: TCP}
      {{- with .extraPorts }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    env:
      {{- if not .clientOnly }}
      - {name: GANTRY_LISTEN_PORT, value: {{ $grpcPort | quote }}}
      {{- end }}
      - {name: GANTRY_LISTEN_HEALTH_PORT, value: {{ $healthPort | quote }}}
      - {name: GANTRY_DATA_DIR, value: /var/lib/gantry}
      - {name: GANTRY_TLS_CA_FILE, value: /etc/gantry/tls/ca.crt}
      - {name: GANTRY_TLS_CERT_FILE, value: /etc/gantry/tls/tls.crt}
      - {name: GANTRY_TLS_KEY_FILE, value: /etc/gantry/tls/tls.key}
      - {name: GANTRY_TLS_RELOAD_INTERVAL_MS, value: {{ $v.tls.reloadIntervalMs | quote }}}
      - {name: GANTRY_AUTH_ISSUER, value: {{ $v.auth.issuer | quote }}}
      - {name: GANTRY_AUTH_AUDIENCE, value: {{ $v.auth.audience | quote }}}
      - {name: GANTRY_AUTH_TRUST_DOMAIN, value: {{ $v.auth.trustDomain | quote }}}
      {{- if $jwks.name }}
      - {name: GANTRY_AUTH_JWKS_FILE, value: {{ printf "/etc/gantry/jwks/%s" $jwks.key | quote }}}
      {{- else if $v.auth.jwksUrl }}
      - {name: GANTRY_AUTH_JWKS_URL, value: {{ $v.auth.jwksUrl | quote }}}
      {{- end }}
      {{- if not .clientOnly }}
      - {name: GANTRY_RATE_LIMIT_STORE, value: {{ .rateLimitStore | quote }}}
      - {name: GANTRY_RATE_LIMIT_POINTS, value: {{ $v.rateLimit.points | quote }}}
      - {name: GANTRY_RATE_LIMIT_WINDOW_SEC, value: {{ $v.rateLimit.windowSec | quote }}}
      {{- end }}
      - {name: GANTRY_TELEMETRY_LOG_LEVEL, value: {{ $v.telemetry.logLevel | quote }}}
      {{- with $v.telemetry.otlpEndpoint }}
      - {name: GANTRY_TELEMETRY_OTLP_ENDPOINT, value: {{ . | quote }}}
      - {name: GANTRY_TELEMETRY_TRACE_SAMPLE_RATIO, value: {{ $v.telemetry.traceSampleRatio | quote }}}
      {{- end }}
      - {name: GANTRY_LIMITS_SHUTDOWN_GRACE_MS, value: {{ $v.shutdownGraceMs | quote }}}
      {{- if not .clientOnly }}
      - {name: GANTRY_EVENTS_ENABLED, value: {{ $v.events.enabled | quote }}}
      - {name: GANTRY_LIMITS_MAX_CONNECTION_AGE_MS, value: {{ $v.grpc.maxConnectionAgeMs | int64 | quote }}}
      - {name: GANTRY_LIMITS_MAX_CONNECTION_AGE_GRACE_MS, value: {{ $v.grpc.maxConnectionAgeGraceMs | int64 | quote }}}
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
      grpc: {port: {{ $healthPort }}, service: startup}
      periodSeconds: {{ $v.probes.startup.periodSeconds }}
      failureThreshold: {{ $v.probes.startup.failureThreshold }}
    readinessProbe:
      grpc: {port: {{ $healthPort }}, service: readiness}
      periodSeconds: {{ $v.probes.readiness.periodSeconds }}
      failureThreshold: {{ $v.probes.readiness.failureThreshold }}
    livenessProbe:
      grpc: {port: {{ $healthPort }}, service: liveness}
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
      {{- if $jwks.name }}
      - {name: jwks, mountPath: /etc/gantry/jwks, readOnly: true}
      {{- end }}
      {{- with .extraMounts }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
volumes:
  - name: tmp
    emptyDir: {sizeLimit: 256Mi}
  {{- toYaml (list .dataVolume) | nindent 2 }}
  - name: tls
    secret: {secretName: {{ include "gantry.tlsSecretName" $component }}, defaultMode: 288}
  {{- if $jwks.name }}
  # Public keys only: no pod holds a key that can mint tokens.
  - name: jwks
    secret: {secretName: {{ $jwks.name }}, defaultMode: 288}
  {{- end }}
  {{- with .extraVolumes }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end -}}

{{/*
Metadata of a namespaced object: (dict "root" $ "component" "log"), named after its component unless
"name" says otherwise; "component" may be left out for shared objects (then "name" is needed);
"annotations" (a dict) when it has some.
*/}}
{{- define "gantry.metadata" -}}
metadata:
  name: {{ .name | default (include "gantry.componentName" .) }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "gantry.labels" . | nindent 4 }}
  {{- with .annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}

{{/*
The Deployment of one component: (dict "root" $ "component" "log" "pod" <gantry.podSpec arguments>),
"replicas" int unless an HPA sets them; rolling one new pod at a time, or "recreate" (the monolith).
The pod's "config": the manifests gantry.configChecksum digests.
*/}}
{{- define "gantry.deployment" -}}
{{- $cfg := .pod.cfg -}}
{{- $annotations := merge (dict) ($cfg.podAnnotations | default dict) .root.Values.podAnnotations -}}
{{- with .pod.config }}{{ $_ := set $annotations "checksum/config" (include "gantry.configChecksum" .) }}{{ end -}}
apiVersion: apps/v1
kind: Deployment
{{ include "gantry.metadata" . }}
spec:
  {{- if .recreate }}
  # One writer of the embedded database: never two pods, not even during a rollout.
  {{- end }}
  {{- if hasKey . "replicas" }}
  replicas: {{ .replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  strategy:
    {{- if .recreate }}
    type: Recreate
    {{- else }}
    type: RollingUpdate
    rollingUpdate: {maxUnavailable: 0, maxSurge: 1}
    {{- end }}
  selector:
    matchLabels:
      {{- include "gantry.selectorLabels" . | nindent 6 }}
  template:
    metadata:
      # podLabels and podAnnotations, the component's over the global ones; the chart's own labels and
      # checksum/config win.
      labels:
        {{- merge (include "gantry.labels" . | fromYaml) ($cfg.podLabels | default dict) .root.Values.podLabels | toYaml | nindent 8 }}
      {{- with $annotations }}
      annotations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    spec:
      {{- include "gantry.podSpec" .pod | nindent 6 }}
{{- end -}}

{{/* At most one pod of a component down at a time: (dict "root" $ "component" "log"). */}}
{{- define "gantry.pdb" -}}
apiVersion: policy/v1
kind: PodDisruptionBudget
{{ include "gantry.metadata" . }}
spec:
  maxUnavailable: 1
  selector:
    matchLabels:
      {{- include "gantry.selectorLabels" . | nindent 6 }}
{{- end -}}

{{/*
Ingress of one component: the plaintext health port from anywhere (kubelet probes), gRPC only from
"from" (NetworkPolicyPeers; none: no gRPC ingress), and "extraIngress" rules (the gateway's HTTPS).
(dict "root" $ "component" "log" "from" (list ...)).
*/}}
{{- define "gantry.networkPolicy" -}}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
{{ include "gantry.metadata" . }}
spec:
  podSelector:
    matchLabels:
      {{- include "gantry.selectorLabels" . | nindent 6 }}
  policyTypes: [Ingress]
  ingress:
    - ports: [{port: {{ include "gantry.healthPort" .root }}, protocol: TCP}]
    {{- with .from }}
    - ports: [{port: {{ include "gantry.grpcPort" $.root }}, protocol: TCP}]
      from:
        {{- toYaml . | nindent 8 }}
    {{- end }}
    {{- with .extraIngress }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end -}}

{{/*
Ingress to the gateway's HTTPS port, as a list of NetworkPolicyIngressRules: from gateway.allowedClients,
or from anywhere when that is empty (it is the platform's edge: every call is authorized by its token).
*/}}
{{- define "gantry.gatewayIngressRules" -}}
{{- $rule := dict "ports" (list (dict "port" (include "gantry.gatewayPort" . | int) "protocol" "TCP")) -}}
{{- with .Values.gateway.allowedClients }}{{ $_ := set $rule "from" . }}{{ end -}}
{{- list $rule | toJson -}}
{{- end -}}

{{/* The dev issuer's public JWKS (auth.devIssuer), which every pod trusts; its private key no pod mounts. */}}
{{- define "gantry.devJwksSecretName" -}}
{{- printf "%s-dev-jwks" (include "gantry.fullname" .) -}}
{{- end -}}

{{/* The pod of the keys Job and CronJob: `gantry keys ensure` with the plan, an API token, hardened. */}}
{{- define "gantry.keysPodSpec" -}}
{{- $v := .root.Values -}}
serviceAccountName: {{ include "gantry.componentName" . }}
automountServiceAccountToken: true
enableServiceLinks: false
restartPolicy: OnFailure
securityContext:
  {{- toYaml $v.podSecurityContext | nindent 2 }}
{{- with $v.image.pullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
containers:
  - name: keys
    image: {{ include "gantry.image" .root }}
    imagePullPolicy: {{ $v.image.pullPolicy }}
    args: [keys, ensure, --plan=/etc/gantry/keys/plan.json]
    securityContext:
      {{- toYaml $v.securityContext | nindent 6 }}
    resources:
      requests: {cpu: 10m, memory: 96Mi}
      limits: {memory: 192Mi}
    volumeMounts:
      - {name: plan, mountPath: /etc/gantry/keys, readOnly: true}
      - {name: tmp, mountPath: /tmp}
volumes:
  - name: plan
    configMap: {name: {{ include "gantry.componentName" . }}}
  - name: tmp
    emptyDir: {sizeLimit: 16Mi}
{{- end -}}
