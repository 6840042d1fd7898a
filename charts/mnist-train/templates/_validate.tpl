{{/*
Checks of value combinations that values.schema.json cannot express with a
clear message. Each `fail` names the values concerned and what to set.
Rendered by templates/validate.yaml, which outputs nothing.
*/}}
{{- define "mnist-train.validate" -}}
{{- include "mnist-train.validate.gcsCredentials" . }}
{{- include "mnist-train.validate.tensorboardExposure" . }}
{{- include "mnist-train.validate.apiServerRules" . }}
{{- include "mnist-train.validate.resourceRequirements" . }}
{{- end }}

{{/*
storage.type=gcs needs exactly one source of credentials: Workload Identity
(storage.gcs.workloadIdentity.gcpServiceAccount, which the chart puts on the
ServiceAccount it creates; an iam.gke.io/gcp-service-account annotation in
serviceAccount.annotations; or storage.gcs.workloadIdentity.enabled for a
ServiceAccount that has access by other means) or a key file Secret
(storage.gcs.existingSecret). With both, GOOGLE_APPLICATION_CREDENTIALS would
silently win over Workload Identity; with neither, every pod fails on its
first read of the bucket.
*/}}
{{- define "mnist-train.validate.gcsCredentials" -}}
{{- if eq .Values.storage.type "gcs" }}
{{- $gcs := .Values.storage.gcs }}
{{- $gsa := $gcs.workloadIdentity.gcpServiceAccount }}
{{- $annotated := and .Values.serviceAccount.create (hasKey .Values.serviceAccount.annotations "iam.gke.io/gcp-service-account") }}
{{- $workloadIdentity := or $gsa $annotated $gcs.workloadIdentity.enabled }}
{{- if and $gsa (not .Values.serviceAccount.create) }}
{{- fail (printf "storage.gcs.workloadIdentity.gcpServiceAccount is set but serviceAccount.create is false: the chart annotates only the ServiceAccount it creates, so ServiceAccount %q would not act as %s. Set serviceAccount.create=true, or annotate your ServiceAccount with iam.gke.io/gcp-service-account yourself and set storage.gcs.workloadIdentity.enabled=true instead of gcpServiceAccount" (include "mnist-train.serviceAccountName" .) $gsa) }}
{{- end }}
{{- if and $workloadIdentity $gcs.existingSecret }}
{{- fail (printf "storage.type=gcs with two sources of credentials: Workload Identity (storage.gcs.workloadIdentity or the ServiceAccount's iam.gke.io/gcp-service-account annotation) and storage.gcs.existingSecret=%q. Keep one: unset storage.gcs.existingSecret to use Workload Identity, or unset storage.gcs.workloadIdentity.gcpServiceAccount/enabled (and the annotation) to use the key file" $gcs.existingSecret) }}
{{- end }}
{{- if not (or $workloadIdentity $gcs.existingSecret) }}
{{- fail (printf "storage.type=gcs needs credentials for %s: set storage.gcs.workloadIdentity.gcpServiceAccount=<name>@<project>.iam.gserviceaccount.com (GKE Workload Identity; the chart annotates its ServiceAccount), or storage.gcs.workloadIdentity.enabled=true if the pods' ServiceAccount already has access to the bucket, or storage.gcs.existingSecret=<Secret holding a service-account key file under storage.gcs.secretKey>" $gcs.uri) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
A NodePort or LoadBalancer Service receives traffic from outside the cluster:
the client's address, or a node's when externalTrafficPolicy is Cluster.
The TensorBoard NetworkPolicy admits only the peers it lists, so without an
ipBlock peer that traffic is dropped and TensorBoard is silently unreachable.
*/}}
{{- define "mnist-train.validate.tensorboardExposure" -}}
{{- $type := .Values.tensorboard.service.type }}
{{- if and .Values.tensorboard.enabled .Values.networkPolicy.enabled (ne $type "ClusterIP") }}
{{- $ipBlocks := 0 }}
{{- range .Values.networkPolicy.tensorboard.from }}
{{- if hasKey . "ipBlock" }}{{ $ipBlocks = add1 $ipBlocks }}{{ end }}
{{- end }}
{{- if eq $ipBlocks 0 }}
{{- fail (printf "tensorboard.service.type=%s exposes TensorBoard outside the cluster, but with networkPolicy.enabled=true its NetworkPolicy admits no outside address, so the %s would be unreachable. Add the clients' addresses to networkPolicy.tensorboard.from, e.g. --set 'networkPolicy.tensorboard.from[0].ipBlock.cidr=203.0.113.0/24' (that traffic arrives from the client's address, or from a node's when the Service's externalTrafficPolicy is Cluster), or set tensorboard.service.type=ClusterIP and use kubectl port-forward or the Ingress, or set networkPolicy.enabled=false" $type $type) }}
{{- end }}
{{- end }}
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

{{/*
A quantity (values.schema.json has checked its syntax) as a float, for
comparisons: "1.5Gi" -> 1610612736.0, "500m" -> 0.5, "1e3" -> 1000.0.
*/}}
{{- define "mnist-train.quantityAsFloat" -}}
{{- $text := toString . }}
{{- $number := regexFind "^[+]?([0-9]+([.][0-9]*)?|[.][0-9]+)" $text }}
{{- $suffix := trimPrefix $number $text }}
{{- $scale := dict "" 1.0 "n" 1e-9 "u" 1e-6 "m" 1e-3 "k" 1e3 "M" 1e6 "G" 1e9 "T" 1e12 "P" 1e15 "E" 1e18 "Ki" 1024.0 "Mi" 1048576.0 "Gi" 1073741824.0 "Ti" 1099511627776.0 "Pi" 1125899906842624.0 "Ei" 1152921504606846976.0 }}
{{- if hasKey $scale $suffix }}
{{- mulf (float64 $number) (get $scale $suffix) }}
{{- else }}
{{- float64 $text }}
{{- end }}
{{- end }}

{{/*
Requests against limits, as the API server checks them
(validateResourceRequirements and validateResourceQuantityValue,
pkg/apis/core/validation/validation.go, kubernetes/kubernetes v1.35): a
request may not exceed its limit; an extended resource (a domain-prefixed
name such as nvidia.com/gpu) cannot be overcommitted, so its request must
equal its limit (which must be set), and it must be a whole number. The
trainer's GPU limit comes from trainer.gpusPerWorker.
*/}}
{{- define "mnist-train.validate.resourceRequirements" -}}
{{- $components := dict "trainer" .Values.trainer.resources "evaluator" .Values.evaluator.resources "tensorboard" .Values.tensorboard.resources "tests" .Values.tests.resources }}
{{- range $component, $resources := $components }}
{{- $limits := deepCopy (default (dict) $resources.limits) }}
{{- $limitSource := dict }}
{{- if and (eq $component "trainer") (gt (int $.Values.trainer.gpusPerWorker) 0) }}
{{- $_ := set $limits "nvidia.com/gpu" $.Values.trainer.gpusPerWorker }}
{{- $_ := set $limitSource "nvidia.com/gpu" "trainer.gpusPerWorker" }}
{{- end }}
{{- range $kind, $list := dict "requests" (default (dict) $resources.requests) "limits" $limits }}
{{- range $name, $quantity := $list }}
{{- if and (contains "/" $name) (not (hasPrefix "kubernetes.io/" $name)) (not (regexMatch "^[+]?[0-9]+$" (toString $quantity))) }}
{{- fail (printf "%s.resources.%s.%s=%v must be a whole number: %s is an extended resource" $component $kind $name $quantity $name) }}
{{- end }}
{{- end }}
{{- end }}
{{- range $name, $request := default (dict) $resources.requests }}
{{- $extended := and (contains "/" $name) (not (hasPrefix "kubernetes.io/" $name)) }}
{{- if and $extended (not (hasKey $limits $name)) }}
{{- fail (printf "%s.resources.requests.%s=%v needs %s.resources.limits.%s set to the same value: an extended resource cannot be overcommitted" $component $name $request $component $name) }}
{{- end }}
{{- if hasKey $limits $name }}
{{- $limit := get $limits $name }}
{{- $limitKey := default (printf "%s.resources.limits.%s" $component $name) (get $limitSource $name) }}
{{- $r := include "mnist-train.quantityAsFloat" $request | float64 }}
{{- $l := include "mnist-train.quantityAsFloat" $limit | float64 }}
{{- if and $extended (ne $r $l) }}
{{- fail (printf "%s.resources.requests.%s=%v must equal %s=%v: an extended resource cannot be overcommitted" $component $name $request $limitKey $limit) }}
{{- else if gt $r $l }}
{{- fail (printf "%s.resources.requests.%s=%v must be less than or equal to %s=%v" $component $name $request $limitKey $limit) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
