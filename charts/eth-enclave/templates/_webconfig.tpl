{{/*
monitoring.webConfig: TLS and basic auth on every ethwatch listener (the sidecars and the network
watcher), and what the monitors need to scrape them. The other named templates: _helpers.tpl.
*/}}
{{/*
"true" when the ethwatch listeners serve TLS (monitoring.webConfig on, with a certificate Secret).
*/}}
{{- define "eth-enclave.webTls" -}}
{{- $w := .Values.monitoring.webConfig -}}
{{- if and $w.enabled $w.tls.secretName -}}true{{- end -}}
{{- end }}

{{- define "eth-enclave.webAuth" -}}
{{- $w := .Values.monitoring.webConfig -}}
{{- if and $w.enabled $w.basicAuth.users -}}true{{- end -}}
{{- end }}

{{/*
Name of the Secret holding the ethwatch listeners' web config file (web-config.yml).
*/}}
{{- define "eth-enclave.webConfigSecretName" -}}
{{- printf "%s-web-config" (include "eth-enclave.fullname" .) -}}
{{- end }}

{{/*
--web.config.file of every ethwatch container (sidecars and the network watcher), when on.
*/}}
{{- define "eth-enclave.webConfigArgs" -}}
{{- if .Values.monitoring.webConfig.enabled -}}
- --web.config.file=/etc/ethwatch/web/web-config.yml
{{- end -}}
{{- end }}

{{- define "eth-enclave.webConfigMounts" -}}
{{- if .Values.monitoring.webConfig.enabled -}}
- name: web-config
  mountPath: /etc/ethwatch/web
  readOnly: true
{{- if include "eth-enclave.webTls" . }}
- name: web-tls
  mountPath: /etc/ethwatch/tls
  readOnly: true
{{- end }}
{{- end -}}
{{- end }}

{{- define "eth-enclave.webConfigVolumes" -}}
{{- if .Values.monitoring.webConfig.enabled -}}
- name: web-config
  secret:
    secretName: {{ include "eth-enclave.webConfigSecretName" . }}
    defaultMode: 0440
{{- if include "eth-enclave.webTls" . }}
- name: web-tls
  secret:
    secretName: {{ .Values.monitoring.webConfig.tls.secretName }}
    defaultMode: 0440
    items:
      - key: tls.crt
        path: tls.crt
      - key: tls.key
        path: tls.key
{{- end }}
{{- end -}}
{{- end }}

{{/*
What a ServiceMonitor endpoint of an ethwatch port needs to scrape it with monitoring.webConfig:
scheme https and the CA that signed the certificate, basic auth from a Secret.
*/}}
{{- define "eth-enclave.webScrapeConfig" -}}
{{- $w := .Values.monitoring.webConfig -}}
{{- if include "eth-enclave.webTls" . }}
scheme: https
tlsConfig:
  {{- if $w.tls.caKey }}
  ca:
    secret:
      name: {{ $w.tls.secretName }}
      key: {{ $w.tls.caKey }}
  {{- end }}
  {{- with $w.tls.serverName }}
  serverName: {{ . }}
  {{- end }}
  {{- if $w.tls.insecureSkipVerify }}
  insecureSkipVerify: true
  {{- end }}
{{- end }}
{{- if include "eth-enclave.webAuth" . }}
basicAuth:
  username:
    name: {{ $w.basicAuth.scrapeSecret.name }}
    key: {{ $w.basicAuth.scrapeSecret.usernameKey }}
  password:
    name: {{ $w.basicAuth.scrapeSecret.name }}
    key: {{ $w.basicAuth.scrapeSecret.passwordKey }}
{{- end }}
{{- end }}
