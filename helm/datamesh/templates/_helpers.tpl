{{/* Names ------------------------------------------------------------------------------ */}}

{{- define "datamesh.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "datamesh.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The code server of a domain: <fullname>-cs-<domain> (Deployment, Service, gRPC host). */}}
{{- define "datamesh.codeServerName" -}}
{{- printf "%s-cs-%s" (include "datamesh.fullname" .ctx) .domain.resourceName | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "datamesh.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "datamesh.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "datamesh.codeServerServiceAccountName" -}}
{{- printf "%s-code-server" (include "datamesh.fullname" .) -}}
{{- end -}}

{{/* Labels ----------------------------------------------------------------------------- */}}

{{- define "datamesh.selectorLabels" -}}
app.kubernetes.io/name: {{ include "datamesh.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- with .domain }}
datamesh.io/domain: {{ .name }}
{{- end }}
{{- end -}}

{{- define "datamesh.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .ctx.Chart.Name .ctx.Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: datamesh
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
{{ include "datamesh.selectorLabels" . }}
{{- end -}}

{{/* Labels of the Kubernetes Jobs of runs (and steps), set through the run launcher. */}}
{{- define "datamesh.runLabels" -}}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: datamesh
datamesh.io/component: run
{{- end -}}

{{/* Image --------------------------------------------------------------------------------- */}}

{{- define "datamesh.image" -}}
{{- $repo := required "image.repository is required (the image built from Containerfile)" .Values.image.repository -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" $repo .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (default .Chart.AppVersion .Values.image.tag | toString) -}}
{{- end -}}
{{- end -}}

{{- define "datamesh.imagePullSecrets" -}}
{{- with .Values.image.pullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Security contexts (restricted-v2 / PodSecurity restricted). */}}
{{- define "datamesh.podSecurityContext" -}}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end -}}

{{- define "datamesh.containerSecurityContext" -}}
securityContext:
  {{- toYaml .Values.containerSecurityContext | nindent 2 }}
{{- end -}}

{{/* Domains: the generated domains.yaml, with per-domain values checked against it. -------- */}}

{{- define "datamesh.domainsFile" -}}
{{- $file := .Files.Get "domains.yaml" -}}
{{- if not $file -}}
{{- fail "domains.yaml is missing from the chart: run `mesh helm values`" -}}
{{- end -}}
{{- $parsed := fromYaml $file -}}
{{- if not $parsed.domains -}}
{{- fail "domains.yaml lists no domain: run `mesh helm values`" -}}
{{- end -}}
{{- $names := list -}}
{{- range $parsed.domains }}{{ $names = append $names .name }}{{ end -}}
{{- range $key, $_ := .Values.domains -}}
{{- if not (has $key $names) -}}
{{- fail (printf "values domains.%s: no such domain (domains.yaml lists %s)" $key (join ", " $names)) -}}
{{- end -}}
{{- end -}}
{{- toYaml $parsed -}}
{{- end -}}

{{/* Settings of one domain: defaults merged with domains.<name> (dict ctx, domain). */}}
{{- define "datamesh.domainSettings" -}}
{{- $over := index .ctx.Values.domains .domain.name | default dict -}}
{{- $cs := mergeOverwrite (deepCopy .ctx.Values.codeServer) (deepCopy ($over.codeServer | default dict)) -}}
{{- $run := mergeOverwrite (deepCopy .ctx.Values.runs) (deepCopy ($over.run | default dict)) -}}
{{- $_ := set $cs "port" ($cs.port | default (fromYaml (include "datamesh.domainsFile" .ctx)).grpcPort) -}}
{{- toYaml (dict "codeServer" $cs "run" $run "env" ($over.env | default list)) -}}
{{- end -}}

{{/* Environment --------------------------------------------------------------------------- */}}

{{/* The Dagster instance's PostgreSQL password (dagster.yaml reads {env: DAGSTER_PG_PASSWORD}). */}}
{{- define "datamesh.dagsterEnv" -}}
- name: DAGSTER_HOME
  value: {{ .Values.paths.dagsterHome | quote }}
- name: DAGSTER_PG_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ required "secrets.dagsterPostgres.name is required" .Values.secrets.dagsterPostgres.name }}
      key: {{ .Values.secrets.dagsterPostgres.key }}
{{- end -}}

{{/* A domain's mesh environment beyond the ConfigMap: credentials by reference only. */}}
{{- define "datamesh.meshSecretEnv" -}}
{{- $s := .Values.secrets -}}
{{- if $s.catalog.name }}
- name: MESH_CATALOG_PASSWORD_FILE
  value: {{ printf "%s/catalog/password" .Values.paths.secrets | quote }}
{{- end }}
{{- if $s.trinoCa.name }}
- name: MESH_TRINO_CA_FILE
  value: {{ printf "%s/trino/ca.crt" .Values.paths.secrets | quote }}
{{- end }}
{{- if $s.openmetadata.name }}
- name: OPENMETADATA_JWT_TOKEN_FILE
  value: {{ printf "%s/openmetadata/token" .Values.paths.secrets | quote }}
{{- end }}
{{- if $s.s3.name }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ $s.s3.name }}
      key: {{ $s.s3.accessKeyIdKey }}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $s.s3.name }}
      key: {{ $s.s3.secretAccessKeyKey }}
{{- end }}
{{- end -}}

{{/* A domain's complete env list (dict ctx, domain, settings). */}}
{{- define "datamesh.domainEnv" -}}
- name: MESH_DOMAIN
  value: {{ .domain.name | quote }}
{{- include "datamesh.meshSecretEnv" .ctx }}
{{- if .ctx.Values.secrets.trino.name }}
- name: MESH_TRINO_USER
  value: {{ printf "domain-%s" .domain.name | quote }}
- name: MESH_TRINO_PASSWORD_FILE
  value: {{ printf "%s/trino-login/password" .ctx.Values.paths.secrets | quote }}
{{- end }}
{{- with .settings.env }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Volumes --------------------------------------------------------------------------------- */}}

{{- define "datamesh.secretProjections" -}}
{{- $s := .Values.secrets -}}
{{- if $s.catalog.name }}
- secret:
    name: {{ $s.catalog.name }}
    items:
      - {key: {{ $s.catalog.key | quote }}, path: catalog/password}
{{- end }}
{{- if $s.trinoCa.name }}
- secret:
    name: {{ $s.trinoCa.name }}
    items:
      - {key: {{ $s.trinoCa.key | quote }}, path: trino/ca.crt}
{{- end }}
{{- if $s.openmetadata.name }}
- secret:
    name: {{ $s.openmetadata.name }}
    items:
      - {key: {{ $s.openmetadata.key | quote }}, path: openmetadata/token}
{{- end }}
{{- end -}}

{{/* Volumes of a domain's code server and runs (dict ctx, domain): mounted secrets (of
     Trino's logins, the domain's own only) and the landing zone. */}}
{{- define "datamesh.domainVolumes" -}}
{{- $ctx := .ctx -}}
{{- $projections := include "datamesh.secretProjections" $ctx -}}
{{- if $ctx.Values.secrets.trino.name }}
{{- $projections = printf "%s\n- secret:\n    name: %s\n    items:\n      - {key: %s, path: trino-login/password}" $projections $ctx.Values.secrets.trino.name (printf "domain-%s" .domain.name | quote) }}
{{- end }}
{{- if trim $projections }}
- name: mesh-secrets
  projected:
    defaultMode: 288
    sources:
      {{- $projections | trim | nindent 6 }}
{{- end }}
- name: landing
{{- if $ctx.Values.landing.existingClaim }}
  persistentVolumeClaim:
    claimName: {{ $ctx.Values.landing.existingClaim }}
{{- else }}
  emptyDir: {}
{{- end }}
{{- end -}}

{{- define "datamesh.domainVolumeMounts" -}}
{{- if or (include "datamesh.secretProjections" .) .Values.secrets.trino.name }}
- name: mesh-secrets
  mountPath: {{ .Values.paths.secrets }}
  readOnly: true
{{- end }}
- name: landing
  mountPath: {{ .Values.landing.mountPath }}
{{- end -}}

{{/* Volumes of every Dagster process: dagster.yaml and a writable MESH_HOME. */}}
{{- define "datamesh.instanceVolumes" -}}
- name: dagster-instance
  configMap:
    name: {{ include "datamesh.fullname" . }}-instance
- name: mesh-home
  emptyDir: {}
- name: tmp
  emptyDir: {}
{{- end -}}

{{- define "datamesh.instanceVolumeMounts" -}}
- name: dagster-instance
  mountPath: {{ printf "%s/dagster.yaml" .Values.paths.dagsterHome }}
  subPath: dagster.yaml
  readOnly: true
- name: mesh-home
  mountPath: {{ .Values.paths.meshHome }}
- name: tmp
  mountPath: /tmp
{{- end -}}

{{/* The container context a domain's code server reports to Dagster: how the run launcher
     builds the Kubernetes Job of each of the domain's runs (resources, env, volumes). */}}
{{- define "datamesh.containerContext" -}}
{{- $ctx := .ctx -}}
k8s:
  env_config_maps:
    - {{ include "datamesh.fullname" $ctx }}-mesh
  env:
    {{- include "datamesh.domainEnv" . | trim | nindent 4 }}
  volumes:
    {{- include "datamesh.domainVolumes" . | trim | nindent 4 }}
  volume_mounts:
    {{- include "datamesh.domainVolumeMounts" $ctx | trim | nindent 4 }}
  resources:
    {{- toYaml .settings.run.resources | nindent 4 }}
  labels:
    datamesh.io/domain: {{ .domain.name }}
  run_k8s_config:
    {{- if or .settings.run.nodeSelector .settings.run.tolerations }}
    pod_spec_config:
      {{- with .settings.run.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .settings.run.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    {{- end }}
    job_spec_config:
      ttlSecondsAfterFinished: {{ .settings.run.ttlSecondsAfterFinished }}
      backoffLimit: {{ .settings.run.backoffLimit }}
{{- end -}}
