{{/*
Checks of value combinations that values.schema.json cannot express with a
clear message. Each `fail` names the values concerned and what to set.
Rendered by templates/validate.yaml, which outputs nothing.
*/}}
{{- define "mnist-train.validate" -}}
{{- include "mnist-train.validate.apiServerRules" . }}
{{- end }}

{{/*
API server rules on single values that a JSON schema pattern cannot state
clearly (kubernetes/kubernetes v1.35):
- an Ingress host must be a DNS name, not an IP address (validateIngressRules,
  pkg/apis/networking/validation/validation.go);
- a Prefix path must not contain '//', '/./', '/../' or '%2f', nor end in
  '/.' or '/..' (validateHTTPIngressPath, same file);
- a claim's storage request must be greater than zero
  (ValidatePersistentVolumeClaimSpec, pkg/apis/core/validation/validation.go).
*/}}
{{- define "mnist-train.validate.apiServerRules" -}}
{{- $ingress := .Values.tensorboard.ingress }}
{{- if and .Values.tensorboard.enabled $ingress.enabled }}
{{- if regexMatch "^[0-9.]+$" $ingress.host }}
{{- fail (printf "tensorboard.ingress.host=%q must be a DNS name, not an IP address (leave it empty to match any host)" $ingress.host) }}
{{- end }}
{{- range list "//" "/./" "/../" "%2f" "%2F" }}
{{- if contains . $ingress.path }}
{{- fail (printf "tensorboard.ingress.path=%q must not contain %q" $ingress.path .) }}
{{- end }}
{{- end }}
{{- if or (hasSuffix "/." $ingress.path) (hasSuffix "/.." $ingress.path) }}
{{- fail (printf "tensorboard.ingress.path=%q must not end in '/.' or '/..'" $ingress.path) }}
{{- end }}
{{- end }}
{{- if and (eq .Values.storage.type "pvc") (not .Values.storage.pvc.existingClaim) }}
{{- if regexMatch "^[+]?0*[.]?0*([KMGTPE]i|[numkMGTPE]|[eE][+-]?[0-9]+)?$" (toString .Values.storage.pvc.size) }}
{{- fail (printf "storage.pvc.size=%v must be greater than zero, e.g. 5Gi" .Values.storage.pvc.size) }}
{{- end }}
{{- end }}
{{- end }}
