{{/* Chart name, truncated to the 63 characters of a label value. */}}
{{- define "rollguard.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name: the release name, or release-chart when the release name does not contain the chart name. */}}
{{- define "rollguard.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "rollguard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "rollguard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "rollguard.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "rollguard.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: rollguard
{{- end -}}

{{- define "rollguard.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "rollguard.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* "true" when replicas elect a leader (more than one replica). */}}
{{- define "rollguard.leaderElection" -}}
{{- if gt (int .Values.replicas) 1 -}}true{{- end -}}
{{- end -}}

{{- define "rollguard.metricsService" -}}
{{- printf "%s-metrics" (include "rollguard.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "rollguard.job" -}}
{{- default (include "rollguard.metricsService" .) .Values.prometheusRule.job -}}
{{- end -}}

{{/*
What the operator does to the objects it manages, and nothing more (see README "RBAC").
Used by the ClusterRole, or by the Role in each of watchNamespaces.
*/}}
{{- define "rollguard.rules" -}}
# ModelDeployments: watched into the cache; patched once to drop the finalizer older versions added.
- apiGroups: [rollguard.io]
  resources: [modeldeployments]
  verbs: [get, list, watch, patch]
- apiGroups: [rollguard.io]
  resources: [modeldeployments/status]
  verbs: [patch]
# Children carry ownerReferences with blockOwnerDeletion, which needs this where the
# OwnerReferencesPermissionEnforcement admission plugin is on (e.g. OpenShift).
- apiGroups: [rollguard.io]
  resources: [modeldeployments/finalizers]
  verbs: [update]
# Child Deployments: watched (to react to readiness), server-side applied, retired revisions deleted.
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch, delete]
# The model's Services (main, -stable, -canary): watched into the cache, server-side applied.
- apiGroups: [""]
  resources: [services]
  verbs: [get, list, watch, create, patch]
# PodDisruptionBudget and HorizontalPodAutoscaler: watched, applied, and deleted when the spec drops them.
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [get, list, watch, create, patch, delete]
# Pods: listed (never changed) to say why a revision is not ready (ImagePullBackOff, ...).
- apiGroups: [""]
  resources: [pods]
  verbs: [list]
# ReplicaSets: listed (never changed) while no pod explains it, for FailedCreate (Pod Security, quota).
- apiGroups: [apps]
  resources: [replicasets]
  verbs: [list]
# Events on ModelDeployments (Promoted, RolledBack, ...); listed once per object per start, to re-announce a lost one.
- apiGroups: [""]
  resources: [events]
  verbs: [create, list]
# Gateway API: the user's HTTPRoutes watched into the cache; the weights of their backendRefs patched.
- apiGroups: [gateway.networking.k8s.io]
  resources: [httproutes]
  verbs: [get, list, watch, patch]
{{- end -}}

{{/* kopf watches CRDs to notice resources appearing or changing (read-only, cluster-scoped). */}}
{{- define "rollguard.observerRules" -}}
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [list, watch]
{{- end -}}
