{{/*
Names, labels and the pieces shared by several templates.
*/}}

{{- define "modelward.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* "<release>-modelward", or the release name when it already contains the chart name. */}}
{{- define "modelward.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "modelward.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "modelward.selectorLabels" -}}
app.kubernetes.io/name: {{ include "modelward.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "modelward.labels" -}}
helm.sh/chart: {{ include "modelward.chart" . }}
{{ include "modelward.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: modelward
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "modelward.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "modelward.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
The image repository, with its registry host replaced by global.imageRegistry when that is set
(an air-gapped mirror). The host is the first path component when it looks like one (a dot, a
colon or "localhost", Docker's rule); otherwise the repository has none and gets the mirror's.
*/}}
{{- define "modelward.repository" -}}
{{- $repository := .Values.image.repository -}}
{{- $registry := dig "imageRegistry" "" (.Values.global | default dict) -}}
{{- if $registry -}}
{{- $parts := splitList "/" $repository -}}
{{- $first := first $parts -}}
{{- if and (gt (len $parts) 1) (or (contains "." $first) (contains ":" $first) (eq $first "localhost")) -}}
{{- $repository = join "/" (rest $parts) -}}
{{- end -}}
{{- $repository = printf "%s/%s" $registry $repository -}}
{{- end -}}
{{- $repository -}}
{{- end -}}

{{/* The image reference: by digest when one is given (a tag can move), else by tag. */}}
{{- define "modelward.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" (include "modelward.repository" .) .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" (include "modelward.repository" .) (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* Secret holding the serving certificate (tls.crt, tls.key; ca.crt in modes operator and certManager). */}}
{{- define "modelward.tlsSecretName" -}}
{{- default (printf "%s-tls" (include "modelward.fullname" .)) .Values.certificates.secretName -}}
{{- end -}}

{{/* The cert-manager Certificate for the serving certificate (mode certManager). */}}
{{- define "modelward.servingCertificateName" -}}
{{- printf "%s-serving" (include "modelward.fullname" .) -}}
{{- end -}}

{{/*
Namespaces no webhook ever intercepts, whatever the values say, so that a cluster can always
restart: kube-system (the control plane's own pods), kube-node-lease (node heartbeats) and the
release namespace (modelward's own pods must start for modelward to answer). Must contain
modelward.api.webhooks.ALWAYS_EXCLUDED_NAMESPACES (tests/chart checks it).
*/}}
{{- define "modelward.excludedNamespaces" -}}
{{- $names := concat (list "kube-system" "kube-node-lease" .Release.Namespace) .Values.webhook.excludedNamespaces -}}
{{- $names | uniq | sortAlpha | toJson -}}
{{- end -}}

{{/*
namespaceSelector of a webhook. Called with (dict "root" $ "enforced" true|false): the enforced
webhook selects namespaces with the enforced label, the fail-open one exactly the others
(NotIn also matches namespaces without the label), both minus the excluded namespaces.
*/}}
{{- define "modelward.namespaceSelector" -}}
{{- $root := .root -}}
{{- $label := $root.Values.webhook.enforcedNamespaceLabel -}}
matchExpressions:
  - key: kubernetes.io/metadata.name
    operator: NotIn
    values: {{ include "modelward.excludedNamespaces" $root }}
  - key: {{ $label.key | quote }}
    operator: {{ ternary "In" "NotIn" .enforced }}
    values: {{ $label.values | toJson }}
{{- with $root.Values.webhook.namespaceSelector.matchExpressions }}
{{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/*
The intercepted objects: a copy of modelward.api.webhooks.webhook_rules(), the single source
(tests/chart compares them). CREATE and UPDATE of namespaced objects only: deletes are never
blocked, and nodes, leases, CSRs and other cluster objects are never intercepted.
Called with (dict "exposures" true|false): Services, Ingresses and Gateway API routes are
validated, never mutated.
*/}}
{{- define "modelward.webhookRules" -}}
- apiGroups: [""]
  apiVersions: ["v1"]
  resources: ["pods", "pods/ephemeralcontainers", "replicationcontrollers"]
  operations: ["CREATE", "UPDATE"]
  scope: Namespaced
- apiGroups: ["apps"]
  apiVersions: ["v1"]
  resources: ["deployments", "statefulsets", "daemonsets", "replicasets"]
  operations: ["CREATE", "UPDATE"]
  scope: Namespaced
- apiGroups: ["batch"]
  apiVersions: ["v1"]
  resources: ["jobs", "cronjobs"]
  operations: ["CREATE", "UPDATE"]
  scope: Namespaced
{{- if .exposures }}
- apiGroups: [""]
  apiVersions: ["v1"]
  resources: ["services"]
  operations: ["CREATE", "UPDATE"]
  scope: Namespaced
- apiGroups: ["networking.k8s.io"]
  apiVersions: ["v1"]
  resources: ["ingresses"]
  operations: ["CREATE", "UPDATE"]
  scope: Namespaced
- apiGroups: ["gateway.networking.k8s.io"]
  apiVersions: ["*"]
  resources: ["httproutes", "grpcroutes", "tlsroutes", "tcproutes", "udproutes"]
  operations: ["CREATE", "UPDATE"]
  scope: Namespaced
- apiGroups: ["rbac.authorization.k8s.io"]
  apiVersions: ["v1"]
  resources: ["roles", "rolebindings"]
  operations: ["CREATE", "UPDATE"]
  scope: Namespaced
{{- end }}
{{- end -}}

{{/*
caBundle of the webhook configurations. mode files: the value given. mode operator: the CA the
operator stored in its Secret, if it exists already (upgrades and re-installs then render the
right bundle at once, instead of waiting for the operator to patch it). mode certManager:
nothing (cert-manager's CA injector fills it). Empty output means "no caBundle field".
*/}}
{{- define "modelward.caBundle" -}}
{{- if eq .Values.certificates.mode "files" -}}
{{- .Values.certificates.files.caBundle -}}
{{- else if eq .Values.certificates.mode "operator" -}}
{{- $secret := lookup "v1" "Secret" .Release.Namespace (include "modelward.tlsSecretName" .) -}}
{{- if and $secret $secret.data -}}
{{- index $secret.data "ca.crt" | default "" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* PromQL label matchers selecting modelward's series in alert expressions. */}}
{{- define "modelward.alertSelector" -}}
{{- default (printf "job=%q" (include "modelward.fullname" .)) .Values.prometheusRule.selector -}}
{{- end -}}

{{/*
Cross-field checks values.schema.json cannot express; they fail the render with a message that
names the values to change.
*/}}
{{- define "modelward.validate" -}}
{{- with .Values.registryLookups.deadlineSeconds -}}
{{- if ge (float64 .) (float64 $.Values.operator.deadlineSeconds) -}}
{{- fail (printf "registryLookups.deadlineSeconds (%v) must be below operator.deadlineSeconds (%v): the review must still be judged after its look-ups" . $.Values.operator.deadlineSeconds) -}}
{{- end -}}
{{- end -}}
{{- if ge (float64 .Values.operator.deadlineSeconds) (float64 .Values.webhook.timeoutSeconds) -}}
{{- fail (printf "operator.deadlineSeconds (%v) must be below webhook.timeoutSeconds (%v): modelward must answer before the API server gives up" .Values.operator.deadlineSeconds .Values.webhook.timeoutSeconds) -}}
{{- end -}}
{{- if and .Values.podDisruptionBudget.enabled (gt (int .Values.replicaCount) 1) (ge (int .Values.podDisruptionBudget.minAvailable) (int .Values.replicaCount)) -}}
{{- fail (printf "podDisruptionBudget.minAvailable (%v) must be below replicaCount (%v), or no node could ever be drained" .Values.podDisruptionBudget.minAvailable .Values.replicaCount) -}}
{{- end -}}
{{- if and (eq .Values.certificates.mode "files") (not .Values.certificates.secretName) -}}
{{- fail "certificates.mode=files needs certificates.secretName: the kubernetes.io/tls Secret holding tls.crt and tls.key" -}}
{{- end -}}
{{- if and (eq .Values.certificates.mode "files") (not .Values.certificates.files.caBundle) -}}
{{- fail "certificates.mode=files needs certificates.files.caBundle: base64 of the PEM CA that signed tls.crt" -}}
{{- end -}}
{{- end -}}

{{/*
Labels of the hooks' objects: the standard ones minus app.kubernetes.io/name, so that the
chart's NetworkPolicy (which selects name + instance) never applies to the hook pods and the
Service never routes to them.
*/}}
{{- define "modelward.hookLabels" -}}
helm.sh/chart: {{ include "modelward.chart" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: modelward
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The restricted pod spec shared by the hook pods: no token unless asked, read-only. */}}
{{- define "modelward.hookPodSecurity" -}}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
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
The registry look-ups' share of the review deadline: registryLookups.deadlineSeconds, or 60% of
operator.deadlineSeconds when unset (time is left to evaluate after the look-ups).
*/}}
{{- define "modelward.registryLookupDeadline" -}}
{{- if .Values.registryLookups.deadlineSeconds -}}
{{- .Values.registryLookups.deadlineSeconds -}}
{{- else -}}
{{- mulf (float64 .Values.operator.deadlineSeconds) 0.6 | printf "%.2f" -}}
{{- end -}}
{{- end -}}
