{{/*
Expand the name of the chart.
*/}}
{{- define "mnist-train.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Create a default fully qualified app name.
We truncate at 63 chars because some Kubernetes name fields are limited to this (by the DNS naming spec).
If release name contains chart name it will be used as a full name.
*/}}
{{- define "mnist-train.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Create chart name and version as used by the chart label.
*/}}
{{- define "mnist-train.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels.
*/}}
{{- define "mnist-train.labels" -}}
helm.sh/chart: {{ include "mnist-train.chart" . }}
{{ include "mnist-train.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: {{ include "mnist-train.name" . }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Selector labels.
*/}}
{{- define "mnist-train.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mnist-train.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Labels of one component: (dict "ctx" $ "component" "trainer").
*/}}
{{- define "mnist-train.componentLabels" -}}
{{ include "mnist-train.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
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
Component names. The trainer's name is short enough that its pods' host
names (<trainer>-<index>, or <trainer>-worker-0-<index> for a JobSet) stay
within 63 characters.
*/}}
{{- define "mnist-train.trainerName" -}}
{{- $name := printf "%s-trainer" (include "mnist-train.fullname" . | trunc 40 | trimSuffix "-") }}
{{- if contains "." $name }}
{{- fail (printf "the release name (or fullnameOverride) must not contain '.': the workers' host names derive from %q" $name) }}
{{- end }}
{{- $name }}
{{- end }}

{{- define "mnist-train.workersServiceName" -}}
{{- printf "%s-workers" (include "mnist-train.fullname" . | trunc 40 | trimSuffix "-") }}
{{- end }}

{{- define "mnist-train.evaluatorName" -}}
{{- printf "%s-evaluator" (include "mnist-train.fullname" . | trunc 53 | trimSuffix "-") }}
{{- end }}

{{- define "mnist-train.tensorboardName" -}}
{{- printf "%s-tensorboard" (include "mnist-train.fullname" . | trunc 51 | trimSuffix "-") }}
{{- end }}

{{- define "mnist-train.testName" -}}
{{- printf "%s-test" (include "mnist-train.fullname" . | trunc 58 | trimSuffix "-") }}
{{- end }}

{{- define "mnist-train.pvcName" -}}
{{- if .Values.storage.pvc.existingClaim }}
{{- .Values.storage.pvc.existingClaim }}
{{- else }}
{{- printf "%s-models" (include "mnist-train.fullname" . | trunc 56 | trimSuffix "-") }}
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
