{{/*
Exit codes of `python -m model` (model/errors.py): the Job's
podFailurePolicy fails at once on a configuration/data error and ignores a
preemption (SIGTERM received, checkpoint saved).
*/}}
{{- define "mnist-train.exitCodeConfigError" -}}2{{- end }}
{{- define "mnist-train.exitCodePreempted" -}}42{{- end }}

{{/*
podFailurePolicy of a Job whose pods run one container: (dict "container" "trainer").
Rules are evaluated in order; the first match wins.
*/}}
{{- define "mnist-train.podFailurePolicy" -}}
rules:
  # Evicted, preempted by the scheduler, or node drained: not the job's fault.
  - action: Ignore
    onPodConditions:
      - type: DisruptionTarget
        status: "True"
  # Preempted: SIGTERM received and state saved. Restart it, do not count it.
  - action: Ignore
    onExitCodes:
      containerName: {{ .container }}
      operator: In
      values: [{{ include "mnist-train.exitCodePreempted" . }}]
  # Bad flags, TF_CONFIG or data: retrying cannot help.
  - action: FailJob
    onExitCodes:
      containerName: {{ .container }}
      operator: In
      values: [{{ include "mnist-train.exitCodeConfigError" . }}]
{{- end }}

{{/*
The trainer workload's spec for the launcher in use (defined beside each
object: trainer-job.yaml, trainer-jobset.yaml, trainer-tfjob.yaml).
*/}}
{{- define "mnist-train.trainer.spec" -}}
{{- include (printf "mnist-train.trainer.spec.%s" .Values.trainer.launcher) . }}
{{- end }}

{{/*
Pod template of a trainer worker, shared by the three launchers:
(dict "ctx" $ "container" "trainer"|"tensorflow").
*/}}
{{- define "mnist-train.trainer.podTemplate" -}}
{{- $ctx := .ctx }}
{{- $v := $ctx.Values }}
metadata:
  labels:
    {{- include "mnist-train.podLabels" (dict "ctx" $ctx "component" "trainer" "podLabels" $v.trainer.podLabels "podLabelsKey" "trainer.podLabels") | nindent 4 }}
  {{- with $v.trainer.podAnnotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  {{- include "mnist-train.podCommon" $ctx | trim | nindent 2 }}
  {{- if ne $v.trainer.launcher "tfjob" }}
  restartPolicy: Never
  {{- end }}
  {{- if eq $v.trainer.launcher "job" }}
  # Stable DNS names <trainer>-<index>.<workers service> for the workers.
  subdomain: {{ include "mnist-train.workersServiceName" $ctx }}
  {{- end }}
  terminationGracePeriodSeconds: {{ $v.trainer.terminationGracePeriodSeconds }}
  {{- with $v.scheduling.schedulerName }}
  schedulerName: {{ . }}
  {{- end }}
  {{- with (include "mnist-train.podScheduling" (dict "ctx" $ctx "values" $v.trainer) | trim) }}{{ . | nindent 2 }}{{- end }}
  containers:
    - name: {{ .container }}
      image: {{ include "mnist-train.image" $ctx | quote }}
      imagePullPolicy: {{ $v.image.pullPolicy }}
      command: ["python", "-m", "model"]
      args:
        - train
        - --model
        - {{ $v.training.model | quote }}
        - --model-dir
        - {{ include "mnist-train.modelDir" $ctx | quote }}
        - --preset
        - {{ $v.training.preset | quote }}
        {{- if not (kindIs "invalid" $v.training.maxSteps) }}
        - --max-steps
        - {{ $v.training.maxSteps | quote }}
        {{- end }}
        - --batch-size
        - {{ $v.training.batchSize | quote }}
        - --all-reduce-dtype
        - {{ $v.training.allReduceDtype | quote }}
        - --gradient-exchange
        - {{ $v.training.gradientExchange | quote }}
        - --compute-dtype
        - {{ $v.training.computeDtype | quote }}
        - --save-checkpoints-steps
        - {{ $v.training.saveCheckpointsSteps | quote }}
        {{- if gt (int $v.training.saveCheckpointsSecs) 0 }}
        - --save-checkpoints-secs
        - {{ $v.training.saveCheckpointsSecs | quote }}
        {{- end }}
        - --save-summaries-steps
        - {{ $v.training.saveSummariesSteps | quote }}
        {{- with $v.training.dataDir }}
        - --data-dir
        - {{ . | quote }}
        {{- end }}
        {{- range $v.trainer.extraArgs }}
        - {{ . | quote }}
        {{- end }}
      env:
        {{- if ne $v.trainer.launcher "tfjob" }}
        # Worker i of N is <prefix>-<i>.<service>:<port>; worker 0 is the chief.
        # Kubernetes also sets JOB_COMPLETION_INDEX itself in Indexed Jobs.
        - name: JOB_COMPLETION_INDEX
          valueFrom:
            fieldRef:
              fieldPath: metadata.annotations['batch.kubernetes.io/job-completion-index']
        - name: MNIST_NUM_WORKERS
          value: {{ $v.trainer.workers | quote }}
        - name: MNIST_WORKER_HOSTNAME_PREFIX
          value: {{ include "mnist-train.workerHostnamePrefix" $ctx | quote }}
        - name: MNIST_WORKER_SERVICE
          value: {{ include "mnist-train.workersServiceName" $ctx | quote }}
        - name: MNIST_WORKER_PORT
          value: {{ $v.trainer.port | quote }}
        {{- else }}
        # The training operator sets TF_CONFIG (cluster and task index).
        - name: MNIST_NUM_WORKERS
          value: {{ $v.trainer.workers | quote }}
        {{- end }}
        {{- with (include "mnist-train.storageEnv" $ctx | trim) }}{{ . | nindent 8 }}{{- end }}
        {{- with $v.trainer.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      ports:
        - name: {{ ternary "tfjob-port" "grpc" (eq $v.trainer.launcher "tfjob") }}
          containerPort: {{ $v.trainer.port }}
          protocol: TCP
      resources:
        {{- $res := deepCopy $v.trainer.resources }}
        {{- if gt (int $v.trainer.gpusPerWorker) 0 }}
        {{- $limits := default (dict) $res.limits }}
        {{- $_ := set $limits "nvidia.com/gpu" (int $v.trainer.gpusPerWorker) }}
        {{- $_ := set $res "limits" $limits }}
        {{- end }}
        {{- toYaml $res | nindent 8 }}
      securityContext:
        {{- toYaml $v.securityContext | nindent 8 }}
      volumeMounts:
        {{- include "mnist-train.volumeMounts" (dict "ctx" $ctx "role" "trainer") | trim | nindent 8 }}
  volumes:
    {{- include "mnist-train.volumes" (dict "ctx" $ctx "role" "trainer") | trim | nindent 4 }}
{{- end }}
