{{- define "datamesh.dagsterYaml" -}}
storage:
  postgres:
    postgres_db:
      hostname: {{ .Values.postgresql.host | quote }}
      port: {{ .Values.postgresql.port }}
      db_name: {{ .Values.postgresql.database | quote }}
      username: {{ .Values.postgresql.user | quote }}
      password: {env: DAGSTER_PG_PASSWORD}
      # SQLAlchemy 2.1 maps postgresql:// to psycopg 3, whose server-side parameters break
      # dagster-postgres' NOTIFY; psycopg2 is the driver dagster-postgres is tested with.
      scheme: postgresql+psycopg2
      {{- with .Values.postgresql.params }}
      params:
        {{- toYaml . | nindent 8 }}
      {{- end }}
run_coordinator:
  module: dagster
  class: QueuedRunCoordinator
  config:
    max_concurrent_runs: {{ .Values.runs.maxConcurrentRuns }}
run_launcher:
{{- if eq .Values.runs.launcher "k8s" }}
  module: dagster_k8s
  class: K8sRunLauncher
  config:
    {{- include "datamesh.runLauncherConfig" . | nindent 4 }}
{{- else if eq .Values.runs.launcher "default" }}
  module: dagster
  class: DefaultRunLauncher
{{- else }}
  {{- fail (printf "runs.launcher %q: k8s or default" .Values.runs.launcher) }}
{{- end }}
run_monitoring:
  enabled: {{ .Values.dagster.runMonitoring.enabled }}
  start_timeout_seconds: {{ .Values.dagster.runMonitoring.startTimeoutSeconds }}
  poll_interval_seconds: {{ .Values.dagster.runMonitoring.pollIntervalSeconds }}
compute_logs:
  {{- toYaml .Values.dagster.computeLogs | nindent 2 }}
scheduler:
  module: dagster._core.scheduler
  class: DagsterDaemonScheduler
telemetry:
  enabled: {{ .Values.dagster.telemetry }}
{{- end -}}

{{/* The K8sRunLauncher: what every run's Job shares. What differs per domain (resources, env,
     volumes) comes from the domain's code server (DAGSTER_CONTAINER_CONTEXT). */}}
{{- define "datamesh.runLauncherConfig" -}}
job_namespace: {{ .Release.Namespace | quote }}
load_incluster_config: true
service_account_name: {{ include "datamesh.serviceAccountName" . | quote }}
instance_config_map: {{ printf "%s-instance" (include "datamesh.fullname" .) | quote }}
dagster_home: {{ .Values.paths.dagsterHome | quote }}
job_image: {{ include "datamesh.image" . | quote }}
image_pull_policy: {{ .Values.image.pullPolicy }}
{{- with .Values.image.pullSecrets }}
image_pull_secrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
fail_pod_on_run_failure: true
labels:
  {{- include "datamesh.runLabels" . | nindent 2 }}
volumes:
  {{- include "datamesh.instanceVolumes" . | nindent 2 }}
volume_mounts:
  {{- include "datamesh.instanceVolumeMounts" . | nindent 2 }}
resources:
  {{- toYaml .Values.runs.resources | nindent 2 }}
security_context:
  {{- toYaml .Values.containerSecurityContext | nindent 2 }}
run_k8s_config:
  container_config:
    env:
      - name: DAGSTER_PG_PASSWORD
        valueFrom:
          secretKeyRef:
            name: {{ .Values.secrets.dagsterPostgres.name | quote }}
            key: {{ .Values.secrets.dagsterPostgres.key | quote }}
  pod_spec_config:
    securityContext:
      {{- toYaml .Values.podSecurityContext | nindent 6 }}
    {{- /* Runs call the Kubernetes API only when steps are Jobs too (k8s_job_executor). */}}
    automountServiceAccountToken: {{ .Values.runs.stepIsolation }}
  job_spec_config:
    ttlSecondsAfterFinished: {{ .Values.runs.ttlSecondsAfterFinished }}
    backoffLimit: {{ .Values.runs.backoffLimit }}
{{- end -}}
