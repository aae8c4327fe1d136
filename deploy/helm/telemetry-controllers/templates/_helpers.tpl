{{- define "telemetry.labels" -}}
app.kubernetes.io/part-of: telemetry
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{- define "telemetry.image" -}}
{{ .image.repository }}:{{ .image.tag | default .appVersion }}{{ with .image.digest }}@{{ . }}{{ end }}
{{- end -}}
