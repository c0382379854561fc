{{/* The UIs: the Dagster webserver and, when enabled, a read-only one for viewers. Dagster OSS has
     no login, so each webserver listens on 127.0.0.1 only and an authenticating proxy in the
     same pod is the one way in: the Service, the Route / Ingress and the NetworkPolicy reach the
     proxy's port, never the webserver's.
       OpenShift: the OpenShift OAuth proxy (the pod's ServiceAccount is the OAuth client; users
         must pass a SubjectAccessReview), HTTPS with a service serving certificate behind a
         reencrypt Route.
       Kubernetes: oauth2-proxy against the OIDC issuer of uiAuth.oidc, HTTP behind the Ingress. */}}

{{/* Every UI as a list of {name, component, readOnly, replicas, serviceAccount, access, host,
     tlsSecretName}; name is the Deployment's, Service's, Route's and Ingress's. */}}
{{- define "datamesh.uis" -}}
{{- $full := include "datamesh.fullname" . -}}
{{- $uis := list (dict
  "name" (printf "%s-webserver" $full)
  "component" "webserver"
  "readOnly" false
  "replicas" .Values.webserver.replicas
  "serviceAccount" (include "datamesh.serviceAccountName" .)
  "access" .Values.webserver.access
  "host" (include "datamesh.uiHost" (dict "ctx" . "host" (ternary .Values.route.host .Values.ingress.host .Values.openshift.enabled)))
  "tlsSecretName" .Values.ingress.tlsSecretName) -}}
{{- $ro := .Values.readOnlyWebserver -}}
{{- if $ro.enabled -}}
{{- $host := include "datamesh.uiHost" (dict "ctx" . "host" $ro.host) -}}
{{- if and .Values.ingress.enabled (not .Values.openshift.enabled) -}}
{{- $host = required "readOnlyWebserver.host is required with an Ingress (the read-only UI's own host)" $ro.host -}}
{{- end -}}
{{- $uis = append $uis (dict
  "name" (printf "%s-webserver-read-only" $full)
  "component" "webserver-read-only"
  "readOnly" true
  "replicas" $ro.replicas
  "serviceAccount" (printf "%s-webserver-read-only" $full)
  "access" $ro.access
  "host" $host
  "tlsSecretName" (default .Values.ingress.tlsSecretName $ro.tlsSecretName)) -}}
{{- end -}}
{{- toYaml $uis -}}
{{- end -}}

{{/* A UI's public host: the Route's (empty: the router generates one) or the Ingress's (none
     without an Ingress) (dict ctx, host). */}}
{{- define "datamesh.uiHost" -}}
{{- if or .ctx.Values.openshift.enabled .ctx.Values.ingress.enabled -}}{{ .host }}{{- end -}}
{{- end -}}

{{/* The proxy's port in the pod (named "proxy"): HTTPS on OpenShift, HTTP elsewhere. */}}
{{- define "datamesh.uiProxyPort" -}}
{{- ternary 8443 4180 .Values.openshift.enabled -}}
{{- end -}}

{{/* The Service port in front of the proxy. */}}
{{- define "datamesh.uiServicePort" -}}
{{- ternary 443 80 .Values.openshift.enabled -}}
{{- end -}}

{{/* The OpenShift OAuth redirect reference of a UI's ServiceAccount: OAuth redirects go only to
     the UI's Route (ui). */}}
{{- define "datamesh.uiOAuthRedirectAnnotation" -}}
{{ printf "serviceaccounts.openshift.io/oauth-redirectreference.%s" .component }}: {{ dict "kind" "OAuthRedirectReference" "apiVersion" "v1" "reference" (dict "kind" "Route" "name" .name) | toJson | quote }}
{{- end -}}

{{/* The authenticating proxy container of a UI's pod (dict ctx, ui). */}}
{{- define "datamesh.uiProxyContainer" -}}
{{- $ctx := .ctx -}}
{{- $ui := .ui -}}
{{- $auth := $ctx.Values.uiAuth -}}
{{- $prefix := $ctx.Values.webserver.pathPrefix -}}
{{- $upstream := printf "http://127.0.0.1:%v" $ctx.Values.webserver.port -}}
{{- $securityContext := mergeOverwrite (deepCopy $ctx.Values.containerSecurityContext) (dict "readOnlyRootFilesystem" true) -}}
{{- if $ctx.Values.openshift.enabled }}
- name: oauth-proxy
  image: {{ $auth.openshift.image }}
  imagePullPolicy: {{ $ctx.Values.image.pullPolicy }}
  args:
    - --provider=openshift
    - {{ printf "--openshift-service-account=%s" $ui.serviceAccount | quote }}
    - {{ printf "--openshift-sar=%s" (mergeOverwrite (dict "namespace" $ctx.Release.Namespace) (deepCopy $ui.access.openshiftSar) | toJson) | quote }}
    - --https-address=:8443
    - --http-address=
    - --tls-cert=/etc/tls/private/tls.crt
    - --tls-key=/etc/tls/private/tls.key
    - --cookie-secret-file=/etc/oauth-proxy/cookie-secret
    - {{ printf "--cookie-name=_datamesh_%s" ($ui.component | replace "-" "_") | quote }}
    - {{ printf "--upstream=%s" $upstream | quote }}
    - {{ printf "--proxy-prefix=%s/oauth" $prefix | quote }}
    - --skip-provider-button
    - --pass-basic-auth=false
    {{- with $auth.extraArgs }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  ports:
    - name: proxy
      containerPort: 8443
      protocol: TCP
  readinessProbe:
    httpGet:
      path: {{ printf "%s/oauth/healthz" $prefix }}
      port: proxy
      scheme: HTTPS
    periodSeconds: 10
  livenessProbe:
    httpGet:
      path: {{ printf "%s/oauth/healthz" $prefix }}
      port: proxy
      scheme: HTTPS
    periodSeconds: 30
    failureThreshold: 5
  volumeMounts:
    - name: ui-proxy-tls
      mountPath: /etc/tls/private
      readOnly: true
    - name: ui-proxy-cookie
      mountPath: /etc/oauth-proxy
      readOnly: true
{{- else }}
{{- $oidc := $auth.oidc }}
- name: oauth2-proxy
  image: {{ $oidc.image }}
  imagePullPolicy: {{ $ctx.Values.image.pullPolicy }}
  args:
    - --provider=oidc
    - {{ printf "--oidc-issuer-url=%s" (required "uiAuth.oidc.issuerUrl is required on Kubernetes (openshift.enabled=false): the OIDC issuer users log in with" $oidc.issuerUrl) | quote }}
    - {{ printf "--client-id=%s" (required "uiAuth.oidc.clientId is required on Kubernetes: the UI's client id at the OIDC issuer" $oidc.clientId) | quote }}
    {{- with $ui.host }}
    - {{ printf "--redirect-url=https://%s%s/oauth2/callback" . $prefix | quote }}
    {{- end }}
    - {{ printf "--oidc-groups-claim=%s" $oidc.groupsClaim | quote }}
    - {{ printf "--scope=%s" $oidc.scope | quote }}
    {{- range $oidc.emailDomains }}
    - {{ printf "--email-domain=%s" . | quote }}
    {{- end }}
    {{- range $ui.access.oidcGroups }}
    - {{ printf "--allowed-group=%s" . | quote }}
    {{- end }}
    - --http-address=0.0.0.0:4180
    - {{ printf "--upstream=%s/" $upstream | quote }}
    - {{ printf "--proxy-prefix=%s/oauth2" $prefix | quote }}
    - {{ printf "--cookie-name=_datamesh_%s" ($ui.component | replace "-" "_") | quote }}
    - --cookie-secure=true
    - --reverse-proxy=true
    - --skip-provider-button=true
    - --silence-ping-logging=true
    {{- with $auth.extraArgs }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  env:
    - name: OAUTH2_PROXY_CLIENT_SECRET
      valueFrom:
        secretKeyRef:
          name: {{ required "secrets.uiOidcClient.name is required on Kubernetes: an existing Secret with the UI's OIDC client secret" $ctx.Values.secrets.uiOidcClient.name }}
          key: {{ $ctx.Values.secrets.uiOidcClient.key }}
    - name: OAUTH2_PROXY_COOKIE_SECRET
      valueFrom:
        secretKeyRef:
          name: {{ required "secrets.uiCookie.name is required: an existing Secret with the UI proxies' cookie secret" $ctx.Values.secrets.uiCookie.name }}
          key: {{ $ctx.Values.secrets.uiCookie.key }}
  ports:
    - name: proxy
      containerPort: 4180
      protocol: TCP
  readinessProbe:
    httpGet:
      path: /ready
      port: proxy
    periodSeconds: 10
  livenessProbe:
    httpGet:
      path: /ping
      port: proxy
    periodSeconds: 30
    failureThreshold: 5
{{- end }}
  securityContext:
    {{- toYaml $securityContext | nindent 4 }}
  resources:
    {{- toYaml $auth.resources | nindent 4 }}
{{- end -}}

{{/* The proxy's volumes (OpenShift: the serving certificate the service CA writes for the UI's
     Service, and the cookie secret) (dict ctx, ui). */}}
{{- define "datamesh.uiProxyVolumes" -}}
{{- if .ctx.Values.openshift.enabled }}
- name: ui-proxy-tls
  secret:
    secretName: {{ .ui.name }}-tls
    defaultMode: 288
- name: ui-proxy-cookie
  secret:
    secretName: {{ required "secrets.uiCookie.name is required: an existing Secret with the UI proxies' cookie secret" .ctx.Values.secrets.uiCookie.name }}
    items:
      - {key: {{ .ctx.Values.secrets.uiCookie.key | quote }}, path: cookie-secret}
    defaultMode: 288
{{- end }}
{{- end -}}
