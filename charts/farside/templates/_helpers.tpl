{{/* Names: <release>-farside-<component>, or <release>-<component> when the release
     name already says farside. */}}
{{- define "farside.fullname" -}}
{{- if contains "farside" .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-farside" .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "farside.labels" -}}
app.kubernetes.io/name: farside
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* selector labels of one component: (dict "root" $ "component" "gateway") */}}
{{- define "farside.selector" -}}
app.kubernetes.io/name: farside
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* an image of farside's: a bare name goes under imageRegistry with imageTag */}}
{{- define "farside.image" -}}
{{- $name := .name -}}
{{- if contains "/" $name -}}
{{- $name -}}
{{- else -}}
{{- printf "%s/%s:%s" .root.Values.imageRegistry $name (.root.Values.imageTag | default .root.Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{- define "farside.gatewayUrl" -}}
{{- if .Values.gateway.publicUrl -}}
{{- .Values.gateway.publicUrl | trimSuffix "/" -}}
{{- else -}}
{{- printf "http://%s-gateway.%s.svc:%d" (include "farside.fullname" .) .Release.Namespace (int .Values.gateway.service.port) -}}
{{- end -}}
{{- end -}}

{{/* the pod-level settings every pod of the chart shares */}}
{{- define "farside.podCommon" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/*
The release's generated secrets, made at the first install and read back from the
cluster at every upgrade (lookup), so passwords and keys never change under running pods.
Computed once per render and kept in .Values._farsideSecrets: every template that needs
them sees the same values.
*/}}
{{- define "farside.secrets" -}}
{{- if not (hasKey .Values "_farsideSecrets") -}}
{{- $name := printf "%s-secrets" (include "farside.fullname" .) -}}
{{- $old := (lookup "v1" "Secret" .Release.Namespace $name).data | default dict -}}
{{- $s := dict -}}
{{- range $key, $length := dict "postgres-password" 32 "cluster-key" 48 "hub-crypt-key" 0 "proxy-token" 48 -}}
{{- if hasKey $old $key -}}
{{- $_ := set $s $key (index $old $key | b64dec) -}}
{{- else if eq $key "hub-crypt-key" -}}
{{- $_ := set $s $key (printf "%s%s" (randAlphaNum 32 | sha256sum | trunc 32) (randAlphaNum 32 | sha256sum | trunc 32)) -}}
{{- else -}}
{{- $_ := set $s $key (randAlphaNum $length) -}}
{{- end -}}
{{- end -}}
{{- $_ := set .Values "_farsideSecrets" $s -}}
{{- end -}}
{{- toJson .Values._farsideSecrets -}}
{{- end -}}

{{- define "farside.databaseUrl" -}}
{{- if .Values.postgresql.enabled -}}
{{- $s := include "farside.secrets" . | fromJson -}}
{{- printf "postgresql+psycopg://farside:%s@%s-postgresql.%s.svc:5432/farside" (index $s "postgres-password") (include "farside.fullname" .) .Release.Namespace -}}
{{- else -}}
{{- .Values.postgresql.externalUrl -}}
{{- end -}}
{{- end -}}

{{/* the gateway's configuration file: the chart's settings under the user's. The
     database URL is not in it: FARSIDE_DATABASE_URL comes from a Secret of its own. */}}
{{- define "farside.gatewayConfig" -}}
{{- $s := include "farside.secrets" . | fromJson -}}
{{- $port := int .Values.gateway.service.port -}}
{{- $cfg := dict
      "host" "0.0.0.0"
      "port" $port
      "state_dir" "/var/lib/farside"
      "public_url" (include "farside.gatewayUrl" .)
-}}
{{- if not (hasKey .Values.gateway.config "blob_url") -}}
{{- $_ := set $cfg "blob_url" "/var/lib/farside/blobs" -}}
{{- end -}}
{{- $clusters := dict "encryption_keys" (list (index $s "cluster-key")) "listen_host" "0.0.0.0" -}}
{{- $_ := set $cfg "clusters" (mergeOverwrite $clusters (.Values.gateway.config.clusters | default dict)) -}}
{{- if .Values.hub.enabled -}}
{{- $hub := dict "api_url" (printf "http://%s-hub.%s.svc:8081/hub/api" (include "farside.fullname" .) .Release.Namespace) -}}
{{- $_ := set $cfg "hub" (mergeOverwrite $hub (.Values.gateway.config.hub | default dict)) -}}
{{- end -}}
{{- $sites := list -}}
{{- if .Values.pilots.enabled -}}
{{- $p := .Values.pilots -}}
{{- $options := dict
      "namespace" .Release.Namespace
      "image" (include "farside.image" (dict "root" . "name" ($p.image | default "pilot")))
      "image_pull_policy" .Values.imagePullPolicy
      "command" (list "python" "-m" "farside_pilot")
      "workdir" "/tmp/farside-pilot"
      "service_account" (printf "%s-pilot" (include "farside.fullname" .))
      "labels" (dict "app.kubernetes.io/instance" .Release.Name "app.kubernetes.io/component" "pilot")
-}}
{{- $site := dict
      "name" $p.site
      "plugin" "kubernetes"
      "cores" (int $p.cores)
      "memory" $p.memory
      "gpus" (int $p.gpus)
      "min_warm" (int $p.minWarm)
      "max_pilots" (int $p.maxPilots)
      "idle_timeout" $p.idleTimeout
      "environments" $p.environments
      "options" (mergeOverwrite $options $p.options)
-}}
{{- if $p.walltime -}}
{{- $_ := set $site "walltime" $p.walltime -}}
{{- end -}}
{{- $sites = append $sites $site -}}
{{- end -}}
{{- $sites = concat $sites (.Values.gateway.config.sites | default list) -}}
{{- $_ := set $cfg "sites" $sites -}}
{{- $user := omit .Values.gateway.config "sites" "clusters" "hub" -}}
{{- toToml (mergeOverwrite $cfg $user) -}}
{{- end -}}

{{/* the hub's profiles with full image names, as JSON for jupyterhub_config.py */}}
{{- define "farside.hubProfiles" -}}
{{- $out := list -}}
{{- range .Values.hub.profiles -}}
{{- $p := deepCopy . -}}
{{- $_ := set $p "image" (include "farside.image" (dict "root" $ "name" .image)) -}}
{{- $out = append $out $p -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}
