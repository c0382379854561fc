{{/* Egress rules from a list of {to: [peers], ports: [...]}; a rule without peers is dropped
     (an egress rule without `to` would allow every destination). */}}
{{- define "datamesh.egressRules" -}}
{{- $rules := list -}}
{{- range .rules -}}
{{- if .to -}}
{{- $rules = append $rules (dict "to" .to "ports" (.ports | default list)) -}}
{{- end -}}
{{- end -}}
{{- toYaml $rules -}}
{{- end -}}

{{- define "datamesh.codeServerPeer" -}}
to:
  - podSelector:
      matchLabels:
        {{- include "datamesh.selectorLabels" (dict "ctx" . "component" "code-server") | nindent 8 }}
ports:
  {{- include "datamesh.codeServerPorts" . | nindent 2 }}
{{- end -}}

{{/* The code servers' gRPC ports, each once, as numbers (named ports in egress rules are not
     resolved the same way by every CNI when one name maps to different numbers). */}}
{{- define "datamesh.codeServerPorts" -}}
{{- $ports := list -}}
{{- range (fromYaml (include "datamesh.domainsFile" .)).domains -}}
{{- $settings := fromYaml (include "datamesh.domainSettings" (dict "ctx" $ "domain" .)) -}}
{{- $ports = append $ports (int $settings.codeServer.port) -}}
{{- end -}}
{{- range (uniq $ports | sortAlpha) }}
- {port: {{ . }}, protocol: TCP}
{{- end -}}
{{- end -}}

{{/* What a domain's code server and runs reach: instance and catalog PostgreSQL, S3, Trino,
     OpenMetadata, DNS. */}}
{{- define "datamesh.meshPeers" -}}
{{- $np := .Values.networkPolicy -}}
{{- toYaml (list $np.dns $np.egress.dagsterPostgres $np.egress.catalogPostgres $np.egress.s3 $np.egress.trino $np.egress.openmetadata) -}}
{{- end -}}
