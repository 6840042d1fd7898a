{{/*
Expand the name of the chart.
*/}}
{{- define "mnist-train.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The base of every object name. Chart name first, so that it starts with a
letter whatever the release name (a Service name must be a DNS-1035 label:
release `2024-sweep` gives `mnist-train-2024-sweep`):
- fullnameOverride, if set;
- else the release name if it is the chart name or starts with `<chart>-`;
- else `<chart>-<release>`.
Longer than the budget (mnist-train.baseNameBudget): cut, plus `-` and 6 hex
digits of the full name's sha256, so that two long names differing only
after the cut still give different names.
*/}}
{{- define "mnist-train.fullname" -}}
{{- $chart := include "mnist-train.name" . }}
{{- $full := "" }}
{{- if .Values.fullnameOverride }}
{{- $full = .Values.fullnameOverride }}
{{- else if or (eq .Release.Name $chart) (hasPrefix (printf "%s-" $chart) .Release.Name) }}
{{- $full = .Release.Name }}
{{- else }}
{{- $full = printf "%s-%s" $chart .Release.Name }}
{{- end }}
{{- if not (regexMatch "^[a-z]([-a-z0-9]*[a-z0-9])?$" $full) }}
{{- fail (printf "the base of every object name, %q (from fullnameOverride, nameOverride or the release name), must be a DNS-1035 label: lower-case letters, digits and '-' (it must not contain '.' or '_'), starting with a letter and ending with a letter or digit" $full) }}
{{- end }}
{{- $budget := int (include "mnist-train.baseNameBudget" .) }}
{{- if gt (len $full) $budget }}
{{- $full = printf "%s-%s" ($full | trunc (int (sub $budget 7)) | trimSuffix "-") (sha256sum $full | trunc 6) }}
{{- end }}
{{- $full }}
{{- end }}

{{/*
The one length budget of the base name, from the longest name derived from
it: a JobSet worker pod. JobSet v0.12.0 (pkg/webhooks/jobset_webhook.go,
placement.GenPodName) requires `<jobset>-<replicatedJob>-<jobIndex>-<podIndex>`
plus `-abcde` (the random suffix) to be a DNS-1035 label (<= 63):
  base + "-trainer-" (9) + generation (6) + "-worker-0-" (10)
       + "999" (3, the schema allows 1000 workers) + "-abcde" (6) <= 63.
Every other name is shorter: Indexed Job host names <job>-<index> (<= 63),
TFJob pods/Services <tfjob>-worker-<index>, `<base>-evaluator-<generation>`.
*/}}
{{- define "mnist-train.baseNameBudget" -}}29{{- end }}

{{/*
The name of one object of the release: (dict "ctx" $ "component" "trainer"),
`<base>-<component>`; with "generation" true, `<base>-<component>-<run
generation>` (the trainer workload and the evaluator Job, see
mnist-train.runGeneration). The only place names are made.
*/}}
{{- define "mnist-train.componentName" -}}
{{- $name := printf "%s-%s" (include "mnist-train.fullname" .ctx) .component }}
{{- if .generation }}
{{- $name = printf "%s-%s" $name (include "mnist-train.runGeneration" .ctx) }}
{{- end }}
{{- $name }}
{{- end }}

{{/*
The run generation: 6 hex digits of the sha256 of what the trainer workload
and the evaluator Job contain (their specs, and the Kueue queue label, as
parsed data), rendered with the placeholder generation `xxxxxx` in every name. Identical
specs give identical names, so `helm upgrade` leaves a running training
alone (a chart version bump changes only the objects' metadata); any change
of their specs gives new names, so Helm replaces both instead of failing on
their immutable fields. Inside the placeholder rendering (the key
runGeneration in the context) it is the placeholder.
*/}}
{{- define "mnist-train.runGeneration" -}}
{{- if hasKey . "runGeneration" }}
{{- .runGeneration }}
{{- else }}
{{- $placeholder := dict "Values" .Values "Release" .Release "Chart" .Chart "Capabilities" .Capabilities "Files" .Files "Template" .Template "runGeneration" "xxxxxx" }}
{{- $parts := list "mnist-train.trainer.spec" "mnist-train.kueueLabel" }}
{{- if .Values.evaluator.enabled }}
{{- $parts = append $parts "mnist-train.evaluator.spec" }}
{{- end }}
{{- /* Parsed, so that a template comment or indentation change is no change. */}}
{{- $content := list }}
{{- range $parts }}
{{- $part := include . $placeholder | fromYaml }}
{{- if hasKey $part "Error" }}
{{- fail (printf "internal: %s does not render a YAML map: %s" . $part.Error) }}
{{- end }}
{{- $content = append $content $part }}
{{- end }}
{{- toJson $content | sha256sum | trunc 6 }}
{{- end }}
{{- end }}

{{/*
Create chart name and version as used by the chart label.
*/}}
{{- define "mnist-train.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels a user label map must not set: the selector labels (the Services,
NetworkPolicies and the Deployment select pods by them; overridden, they
would select nothing and the workers would never find each other) and
managed-by (Helm adopts only objects labelled managed-by=Helm).
Checks one map: (dict "labels" .Values.commonLabels "key" "commonLabels").
*/}}
{{- define "mnist-train.checkUserLabels" -}}
{{- $reserved := list "app.kubernetes.io/name" "app.kubernetes.io/instance" "app.kubernetes.io/component" "app.kubernetes.io/managed-by" }}
{{- range $label, $_ := .labels }}
{{- if has $label $reserved }}
{{- fail (printf "%s must not set the label %q: the chart sets it, and the Services, NetworkPolicies and TensorBoard's Deployment select the pods by %s; use a label key of your own" $.key $label (join ", " $reserved)) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Labels that do not change with the chart version, as a YAML map: the pod
templates' labels, (dict "ctx" $ "component" "trainer" ["podLabels" map
"podLabelsKey" "trainer.podLabels"]). commonLabels and the pod labels
override part-of; the selector labels and managed-by cannot be set by them.
*/}}
{{- define "mnist-train.stableLabels" -}}
{{- $ctx := .ctx }}
{{- include "mnist-train.checkUserLabels" (dict "labels" $ctx.Values.commonLabels "key" "commonLabels") }}
{{- $labels := dict "app.kubernetes.io/managed-by" $ctx.Release.Service "app.kubernetes.io/part-of" (include "mnist-train.name" $ctx) }}
{{- $labels = mergeOverwrite $labels (deepCopy (default (dict) $ctx.Values.commonLabels)) }}
{{- with .podLabels }}
{{- include "mnist-train.checkUserLabels" (dict "labels" . "key" $.podLabelsKey) }}
{{- $labels = mergeOverwrite $labels (deepCopy .) }}
{{- end }}
{{- $labels = mergeOverwrite $labels (fromYaml (include "mnist-train.selectorLabels" $ctx)) }}
{{- with .component }}
{{- $_ := set $labels "app.kubernetes.io/component" . }}
{{- end }}
{{- toYaml $labels }}
{{- end }}

{{/*
Labels of an object's own metadata (mutable): the stable labels plus the
chart version and appVersion. Never in a pod template.
*/}}
{{- define "mnist-train.versionLabels" -}}
helm.sh/chart: {{ include "mnist-train.chart" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}

{{/*
Common labels of an object without a component.
*/}}
{{- define "mnist-train.labels" -}}
{{ include "mnist-train.versionLabels" . }}
{{ include "mnist-train.stableLabels" (dict "ctx" .) }}
{{- end }}

{{/*
Selector labels.
*/}}
{{- define "mnist-train.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mnist-train.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Labels of one component's object: (dict "ctx" $ "component" "trainer").
*/}}
{{- define "mnist-train.componentLabels" -}}
{{ include "mnist-train.versionLabels" .ctx }}
{{ include "mnist-train.stableLabels" (dict "ctx" .ctx "component" .component) }}
{{- end }}

{{/*
Labels of one component's pod template: (dict "ctx" $ "component" "trainer"
"podLabels" .Values.trainer.podLabels "podLabelsKey" "trainer.podLabels").
No chart version: a chart upgrade must not change an (immutable) Job
template nor roll TensorBoard.
*/}}
{{- define "mnist-train.podLabels" -}}
{{ include "mnist-train.stableLabels" . }}
{{- end }}

{{/*
Selector labels of one component: (dict "ctx" $ "component" "trainer").
*/}}
{{- define "mnist-train.componentSelectorLabels" -}}
{{ include "mnist-train.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
Kueue queue label, for the trainer and evaluator objects.
*/}}
{{- define "mnist-train.kueueLabel" -}}
{{- with .Values.scheduling.kueueQueueName }}
kueue.x-k8s.io/queue-name: {{ . | quote }}
{{- end }}
{{- end }}

{{/*
Name of the ServiceAccount the pods use.
*/}}
{{- define "mnist-train.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "mnist-train.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Component names (see mnist-train.componentName for the scheme and budget).
The trainer workload and the evaluator Job carry the run generation.
*/}}
{{- define "mnist-train.trainerName" -}}
{{- include "mnist-train.componentName" (dict "ctx" . "component" "trainer" "generation" true) }}
{{- end }}

{{- define "mnist-train.evaluatorName" -}}
{{- include "mnist-train.componentName" (dict "ctx" . "component" "evaluator" "generation" true) }}
{{- end }}

{{- define "mnist-train.workersServiceName" -}}
{{- include "mnist-train.componentName" (dict "ctx" . "component" "workers") }}
{{- end }}

{{- define "mnist-train.trainerPolicyName" -}}
{{- include "mnist-train.componentName" (dict "ctx" . "component" "trainer") }}
{{- end }}

{{- define "mnist-train.defaultDenyPolicyName" -}}
{{- include "mnist-train.componentName" (dict "ctx" . "component" "default-deny") }}
{{- end }}

{{- define "mnist-train.tensorboardName" -}}
{{- include "mnist-train.componentName" (dict "ctx" . "component" "tensorboard") }}
{{- end }}

{{- define "mnist-train.testName" -}}
{{- include "mnist-train.componentName" (dict "ctx" . "component" "test") }}
{{- end }}

{{- define "mnist-train.pvcName" -}}
{{- if .Values.storage.pvc.existingClaim }}
{{- .Values.storage.pvc.existingClaim }}
{{- else }}
{{- include "mnist-train.componentName" (dict "ctx" . "component" "models") }}
{{- end }}
{{- end }}

{{/*
Name of the JobSet's replicated job of workers.
*/}}
{{- define "mnist-train.jobsetReplicatedJob" -}}
worker
{{- end }}

{{/*
Host name prefix of worker i (<prefix>-<i>.<service>) for the training
library (MNIST_WORKER_HOSTNAME_PREFIX).
*/}}
{{- define "mnist-train.workerHostnamePrefix" -}}
{{- if eq .Values.trainer.launcher "jobset" }}
{{- printf "%s-%s-0" (include "mnist-train.trainerName" .) (include "mnist-train.jobsetReplicatedJob" .) }}
{{- else }}
{{- include "mnist-train.trainerName" . }}
{{- end }}
{{- end }}

{{/*
The image reference: repository@digest, or repository:tag (tag defaults to
the chart's appVersion). `latest` is refused.
*/}}
{{- define "mnist-train.image" -}}
{{- $repo := required "image.repository is required: set it to your mnist-train image, e.g. --set image.repository=ghcr.io/ORG/mnist-train" .Values.image.repository }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $repo .Values.image.digest }}
{{- else }}
{{- $tag := default .Chart.AppVersion .Values.image.tag | toString }}
{{- if eq $tag "latest" }}
{{- fail "image.tag must not be \"latest\": use a fixed release tag or image.digest" }}
{{- end }}
{{- printf "%s:%s" $repo $tag }}
{{- end }}
{{- end }}

{{/*
Name of this release's model directory inside the volume or bucket.
*/}}
{{- define "mnist-train.modelDirName" -}}
{{- default .Release.Name .Values.storage.modelDirName }}
{{- end }}

{{/*
The model directory, the same for the trainer, the evaluator and TensorBoard.
*/}}
{{- define "mnist-train.modelDir" -}}
{{- if eq .Values.storage.type "gcs" }}
{{- $uri := required "storage.gcs.uri is required when storage.type is gcs (e.g. gs://my-bucket/mnist)" .Values.storage.gcs.uri }}
{{- printf "%s/%s" (trimSuffix "/" $uri) (include "mnist-train.modelDirName" .) }}
{{- else }}
{{- printf "%s/%s" (trimSuffix "/" .Values.storage.mountPath) (include "mnist-train.modelDirName" .) }}
{{- end }}
{{- end }}

{{/*
The evaluator's output directory: the `eval` run inside the model directory.
*/}}
{{- define "mnist-train.evalDir" -}}
{{- printf "%s/eval" (include "mnist-train.modelDir" .) }}
{{- end }}

{{/*
Where a GCS key file Secret is mounted.
*/}}
{{- define "mnist-train.gcpCredentialsDir" -}}
/var/secrets/google
{{- end }}

{{/*
Volumes of a pod: (dict "ctx" $ "role" "trainer"|"evaluator"|"tensorboard"|"test").
Every pod gets a private /tmp; on pvc every pod gets the claim; on gcs with a
key file Secret every pod gets the Secret.
*/}}
{{- define "mnist-train.volumes" -}}
{{- $ctx := .ctx }}
- name: tmp
  emptyDir:
    sizeLimit: {{ $ctx.Values.tmpSizeLimit }}
{{- if eq $ctx.Values.storage.type "pvc" }}
- name: models
  persistentVolumeClaim:
    claimName: {{ include "mnist-train.pvcName" $ctx }}
    {{- if has .role (list "tensorboard" "test") }}
    readOnly: true
    {{- end }}
{{- else if $ctx.Values.storage.gcs.existingSecret }}
- name: gcp-credentials
  secret:
    secretName: {{ $ctx.Values.storage.gcs.existingSecret }}
    defaultMode: 0440
    items:
      - key: {{ $ctx.Values.storage.gcs.secretKey }}
        path: {{ $ctx.Values.storage.gcs.secretKey }}
{{- end }}
{{- end }}

{{/*
Volume mounts of a container: (dict "ctx" $ "role" ...). Each mounts only
this release's directory of the claim (subPath). Only the trainer mounts the
model directory writable; the evaluator mounts it read-only plus its `eval`
subdirectory writable (two mounts of one volume); TensorBoard and the
`helm test` hook mount it read-only (and their claim read-only).
*/}}
{{- define "mnist-train.volumeMounts" -}}
{{- $ctx := .ctx }}
- name: tmp
  mountPath: /tmp
{{- if eq $ctx.Values.storage.type "pvc" }}
- name: models
  mountPath: {{ include "mnist-train.modelDir" $ctx }}
  subPath: {{ include "mnist-train.modelDirName" $ctx }}
  readOnly: {{ ne .role "trainer" }}
{{- if eq .role "evaluator" }}
- name: models
  mountPath: {{ include "mnist-train.evalDir" $ctx }}
  subPath: {{ include "mnist-train.modelDirName" $ctx }}/eval
  readOnly: false
{{- end }}
{{- else if $ctx.Values.storage.gcs.existingSecret }}
- name: gcp-credentials
  mountPath: {{ include "mnist-train.gcpCredentialsDir" $ctx }}
  readOnly: true
{{- end }}
{{- end }}

{{/*
Environment common to the containers that read the storage.
*/}}
{{- define "mnist-train.storageEnv" -}}
{{- if and (eq .Values.storage.type "gcs") .Values.storage.gcs.existingSecret }}
# A path to the mounted key file, not a credential.
- name: GOOGLE_APPLICATION_CREDENTIALS
  value: {{ printf "%s/%s" (include "mnist-train.gcpCredentialsDir" .) .Values.storage.gcs.secretKey | quote }}
{{- end }}
{{- end }}

{{/*
Pod-level settings shared by every pod.
*/}}
{{- define "mnist-train.podCommon" -}}
serviceAccountName: {{ include "mnist-train.serviceAccountName" . }}
automountServiceAccountToken: false
enableServiceLinks: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end }}

{{/*
Scheduling settings of a component: (dict "ctx" $ "values" .Values.trainer).
*/}}
{{- define "mnist-train.podScheduling" -}}
{{- with .values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
checkov.io/skip annotations of a workload (Job or Deployment), each with its
reason. A skip is rendered only while its reason holds:
- CKV_K8S_40 (uid >= 10000): the image's user is uid 1000 by contract;
- CKV_K8S_43 (image by digest): dropped when image.digest is set;
- CKV_K8S_15 (pullPolicy Always): dropped when image.pullPolicy is Always.
*/}}
{{- define "mnist-train.checkovSkips" -}}
{{- $skips := list }}
{{- if lt (int (default 0 .Values.securityContext.runAsUser)) 10000 }}
{{- $skips = append $skips "CKV_K8S_40=The image's files belong to its user, uid/gid 1000 (the image contract); change podSecurityContext and securityContext together to run as another uid" }}
{{- end }}
{{- if not .Values.image.digest }}
{{- $skips = append $skips "CKV_K8S_43=The image is pinned by a fixed release tag (default the chart appVersion, never latest); set image.digest to pin it by digest, which removes this skip" }}
{{- end }}
{{- if ne .Values.image.pullPolicy "Always" }}
{{- $skips = append $skips "CKV_K8S_15=The tag or digest is fixed, so IfNotPresent runs the same image; a restarting worker must not depend on the registry being reachable. Set image.pullPolicy to Always on clusters where cached images must not bypass pull credentials" }}
{{- end }}
{{- if .Values.checkov.annotations }}
{{- range $i, $skip := $skips }}
checkov.io/skip{{ add1 $i }}: {{ $skip | quote }}
{{- end }}
{{- end }}
{{- end }}
