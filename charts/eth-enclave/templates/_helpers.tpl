{{/*
Names and labels, in the prometheus-community style.
*/}}
{{- define "eth-enclave.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified name. Node StatefulSets append "-el-<n>-reth-lighthouse" and the like, and a
StatefulSet name must stay within 52 characters: "eth-enclave.participants" fails with a clear
message when it would not.
*/}}
{{- define "eth-enclave.fullname" -}}
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

{{- define "eth-enclave.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels. Call with the root context.
*/}}
{{- define "eth-enclave.labels" -}}
helm.sh/chart: {{ include "eth-enclave.chart" . }}
{{ include "eth-enclave.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: {{ include "eth-enclave.name" . }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Selector labels: name and instance only (components add app.kubernetes.io/component).
*/}}
{{- define "eth-enclave.selectorLabels" -}}
app.kubernetes.io/name: {{ include "eth-enclave.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Labels of one participant's component: (dict "root" $ "p" $participant "component" "execution").
*/}}
{{- define "eth-enclave.nodeSelectorLabels" -}}
{{ include "eth-enclave.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
eth-enclave/participant: {{ .p.index | quote }}
{{- end }}

{{- define "eth-enclave.nodeLabels" -}}
{{ include "eth-enclave.labels" .root }}
app.kubernetes.io/component: {{ .component }}
eth-enclave/participant: {{ .p.index | quote }}
eth-enclave/client: {{ index (dict "execution" .p.el_type "beacon" .p.cl_type "validator" .p.vc_type) .component }}
{{- end }}

{{/*
An image reference from (dict "repository" "tag" "digest"), tag defaulting to `default`.
*/}}
{{- define "eth-enclave.image" -}}
{{- $img := .image -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $img.repository $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $img.repository (toString (default .default $img.tag)) -}}
{{- end -}}
{{- end }}

{{/*
An epoch for values.env: 2^64-1 (or anything past 2^63, which YAML hands Helm as a float) is
"never".
*/}}
{{- define "eth-enclave.epoch" -}}
{{- if ge (float64 .) 9.2e18 -}}
18446744073709551615
{{- else -}}
{{- int64 . -}}
{{- end -}}
{{- end }}

{{/*
The participants, expanded with defaults and the derived numbers every template needs, as JSON:
  {"items": [{index, count, validator_count, keyStart, nodeOffset, elName, clName, vcName, ...}],
   "totalKeys": N, "totalNodes": N, "genesisValidators": N}
index is 1-based as in Kurtosis service names (el-1-reth-lighthouse). The node with global number
nodeOffset+ordinal holds keys [keyStart + ordinal*validator_count, +validator_count).
*/}}
{{- define "eth-enclave.participants" -}}
{{- $full := include "eth-enclave.fullname" . -}}
{{- $np := .Values.network_params -}}
{{- $items := list -}}
{{- $key := 0 -}}
{{- $node := 0 -}}
{{- range $i, $p := .Values.participants -}}
{{- $n := add1 $i -}}
{{- $el := default "reth" $p.el_type -}}
{{- $cl := default "lighthouse" $p.cl_type -}}
{{- $vct := default "lighthouse" $p.vc_type -}}
{{- $count := 1 -}}
{{- if hasKey $p "count" }}{{ if not (kindIs "invalid" $p.count) }}{{ $count = int $p.count }}{{ end }}{{ end -}}
{{- $vc := int $np.num_validator_keys_per_node -}}
{{- if hasKey $p "validator_count" }}{{ if not (kindIs "invalid" $p.validator_count) }}{{ $vc = int $p.validator_count }}{{ end }}{{ end -}}
{{- $imgs := $.Values.clientImages -}}
{{- $elImage := default (index (dict "reth" $imgs.reth "geth" $imgs.geth) $el) $p.el_image -}}
{{- $clImage := default (index (dict "lighthouse" $imgs.lighthouse "prysm" $imgs.prysm) $cl) $p.cl_image -}}
{{- /* A Lighthouse validator client runs from the beacon node's image when that is Lighthouse too
(cl_image overrides both, as in Kurtosis); Prysm ships its validator client as its own image. */ -}}
{{- $vcImage := $imgs.prysmValidator -}}
{{- if eq $vct "lighthouse" }}{{ $vcImage = ternary $clImage $imgs.lighthouse (eq $cl "lighthouse") }}{{ end -}}
{{- $item := dict
    "index" $n
    "el_type" $el "cl_type" $cl "vc_type" $vct
    "count" $count
    "validator_count" $vc
    "keyStart" $key
    "nodeOffset" $node
    "el_image" $elImage
    "cl_image" $clImage
    "vc_image" (default $vcImage $p.vc_image)
    "el_extra_params" (default list $p.el_extra_params)
    "cl_extra_params" (default list $p.cl_extra_params)
    "vc_extra_params" (default list $p.vc_extra_params)
    "elName" (printf "%s-el-%d-%s-%s" $full $n $el $cl)
    "clName" (printf "%s-cl-%d-%s-%s" $full $n $cl $el)
    "vcName" (printf "%s-vc-%d-%s-%s" $full $n $el $cl)
-}}
{{- range $k := list "elName" "clName" "vcName" -}}
{{- if gt (len (index $item $k)) 52 -}}
{{- fail (printf "participants[%d]: the StatefulSet name %q is %d characters, more than Kubernetes allows (52); set fullnameOverride to a shorter name" $i (index $item $k) (len (index $item $k))) -}}
{{- end -}}
{{- end -}}
{{- $items = append $items $item -}}
{{- $key = add $key (mul $count $vc) -}}
{{- $node = add $node $count -}}
{{- end -}}
{{- $genesis := $key -}}
{{- $pre := int (default 0 $np.preregistered_validator_count) -}}
{{- if gt $pre 0 -}}
{{- if gt $key $pre -}}
{{- fail (printf "network_params.preregistered_validator_count is %d but the participants hold %d validator keys (sum of count x validator_count); raise it or give participants fewer keys" $pre $key) -}}
{{- end -}}
{{- $genesis = $pre -}}
{{- end -}}
{{- if eq $genesis 0 -}}
{{- fail "the network has no validators: give at least one participant a validator_count above 0 (or set network_params.preregistered_validator_count)" -}}
{{- end -}}
{{- /* Finality needs two thirds of the stake attesting: keys in genesis that no validator client holds
(a reserve) are silent stake, so held x 3 must reach genesis x 2 or the chain can never finalize. */ -}}
{{- if lt (mul $key 3) (mul $genesis 2) -}}
{{- fail (printf "network_params.preregistered_validator_count is %d but validator clients hold only %d of those keys (%d%%): finality needs two thirds of the validators attesting, so this network could never finalize; keep the reserve (now %d keys) at most a third of genesis (here at most %d keys) or give participants more keys" $genesis $key (div (mul $key 100) $genesis) (sub $genesis $key) (div $key 2)) -}}
{{- end -}}
{{- dict "items" $items "totalKeys" $key "totalNodes" $node "genesisValidators" $genesis | toJson -}}
{{- end }}

{{/*
Name of the (global) node-0 pods, the bootnodes every other node joins through.
*/}}
{{- define "eth-enclave.bootnode" -}}
{{- $ps := include "eth-enclave.participants" . | fromJson -}}
{{- $p0 := index $ps.items 0 -}}
{{- $ns := .Release.Namespace -}}
{{- $d := .Values.clusterDomain -}}
{{- dict "el" (printf "%s-0.%s.%s.svc.%s" $p0.elName $p0.elName $ns $d) "cl" (printf "%s-0.%s.%s.svc.%s" $p0.clName $p0.clName $ns $d) | toJson -}}
{{- end }}

{{/*
The fully qualified names of the network's first 16 execution ("el") and beacon ("cl") pods, space
separated: every node's bootnode init container tries each of them once (one quick request) and
joins whichever already run, so node 0 finds its way back into a running network after a restart.
*/}}
{{- define "eth-enclave.peerHosts" -}}
{{- $ps := include "eth-enclave.participants" . | fromJson -}}
{{- $ns := .Release.Namespace -}}
{{- $d := .Values.clusterDomain -}}
{{- $el := list -}}
{{- $cl := list -}}
{{- range $p := $ps.items -}}
{{- range $ord := until (int $p.count) -}}
{{- if lt (len $el) 16 -}}
{{- $el = append $el (printf "%s-%d.%s.%s.svc.%s" $p.elName $ord $p.elName $ns $d) -}}
{{- $cl = append $cl (printf "%s-%d.%s.%s.svc.%s" $p.clName $ord $p.clName $ns $d) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- dict "el" (join " " $el) "cl" (join " " $cl) | toJson -}}
{{- end }}

{{/*
Node identities: one Secret holds every node's p2p secret key, generated once and kept across
upgrades (or brought with secrets.nodeKeys.existingSecret), so a replaced pod keeps its enode id and
libp2p peer id without persistence. Keys: el-<participant>-<ordinal> (Reth, 64 hex characters, for
--p2p-secret-key) and cl-<participant>-<ordinal> (Lighthouse, the 32 raw bytes of its network/key).
*/}}
{{- define "eth-enclave.nodeKeysSecretName" -}}
{{- if .Values.secrets.nodeKeys.existingSecret -}}
{{- .Values.secrets.nodeKeys.existingSecret -}}
{{- else -}}
{{- printf "%s-node-keys" (include "eth-enclave.fullname" .) -}}
{{- end -}}
{{- end }}

{{/*
The node-key volume of one participant's pods, (dict "root" $ "p" $p "layer" "el"): only its keys.
*/}}
{{- define "eth-enclave.nodeKeyVolume" -}}
- name: node-key
  secret:
    secretName: {{ include "eth-enclave.nodeKeysSecretName" .root }}
    defaultMode: 0440
    items:
    {{- range $ord := until (int .p.count) }}
      - key: {{ $.layer }}-{{ $.p.index }}-{{ $ord }}
        path: {{ $.layer }}-{{ $.p.index }}-{{ $ord }}
    {{- end }}
{{- end }}

{{/*
Name of the JWT Secret.
*/}}
{{- define "eth-enclave.jwtSecretName" -}}
{{- if .Values.secrets.jwt.existingSecret -}}
{{- .Values.secrets.jwt.existingSecret -}}
{{- else -}}
{{- printf "%s-jwt" (include "eth-enclave.fullname" .) -}}
{{- end -}}
{{- end }}

{{/*
The engine-API JWT as the clients read it: the jwt init container copies the pod's own key there.
*/}}
{{- define "eth-enclave.jwtPath" -}}
/jwt/jwt.hex
{{- end }}

{{/*
The JWT volumes of one participant's execution and beacon pods, (dict "root" $ "p" $p):
`jwt-secret`, the Secret with only the keys of that participant's pairs, mounted only in the jwt
init container, and `jwt`, a memory volume with the pod's own key, the only one the client sees.
*/}}
{{- define "eth-enclave.jwtVolume" -}}
- name: jwt-secret
  secret:
    secretName: {{ include "eth-enclave.jwtSecretName" .root }}
    defaultMode: 0440
    items:
    {{- if .root.Values.secrets.jwt.existingSecret }}
      - key: {{ .root.Values.secrets.jwt.existingSecretKey }}
        path: {{ .root.Values.secrets.jwt.existingSecretKey }}
    {{- else }}
    {{- range $ord := until (int .p.count) }}
      - key: jwt-{{ $.p.index }}-{{ $ord }}
        path: jwt-{{ $.p.index }}-{{ $ord }}
    {{- end }}
    {{- end }}
- name: jwt
  emptyDir:
    medium: Memory
    sizeLimit: 1Mi
{{- end }}

{{/*
The jwt init container of execution and beacon pods (files/scripts/copy-jwt.sh): (dict "root" $ "p" $p).
*/}}
{{- define "eth-enclave.jwtInit" -}}
{{- $root := .root -}}
- name: jwt
  image: {{ include "eth-enclave.image" (dict "image" $root.Values.toolsImage) }}
  imagePullPolicy: {{ $root.Values.toolsImage.pullPolicy }}
  command: ["/bin/sh", "-ec"]
  args:
    - |
      {{- $root.Files.Get "files/scripts/copy-jwt.sh" | nindent 6 }}
  env:
    - name: JWT_KEY
      value: {{ ternary $root.Values.secrets.jwt.existingSecretKey (printf "jwt-%d-ORD" (int .p.index)) (not (empty $root.Values.secrets.jwt.existingSecret)) | quote }}
  securityContext:
    {{- toYaml $root.Values.containerSecurityContext | nindent 4 }}
  resources:
    {{- include "eth-enclave.resources" (dict "resources" $root.Values.utilityResources) | nindent 4 }}
  volumeMounts:
    - name: jwt-secret
      mountPath: /jwt-secret
      readOnly: true
    - name: jwt
      mountPath: /jwt
{{- end }}

{{- define "eth-enclave.genesisConfigMapName" -}}
{{- printf "%s-genesis" (include "eth-enclave.fullname" .) -}}
{{- end }}

{{/*
Pod-level settings every node pod shares: (dict "root" $ "p" $p "component" "execution").
*/}}
{{- define "eth-enclave.podCommon" -}}
{{- $root := .root -}}
automountServiceAccountToken: false
enableServiceLinks: false
securityContext:
  {{- toYaml $root.Values.podSecurityContext | nindent 2 }}
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $root.Values.scheduling.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with $root.Values.scheduling.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $root.Values.scheduling.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- $anti := $root.Values.scheduling.podAntiAffinity }}
{{- if or $root.Values.scheduling.nodeAffinity (ne $anti "none") }}
affinity:
  {{- with $root.Values.scheduling.nodeAffinity }}
  nodeAffinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if eq $anti "hard" }}
  podAntiAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      - topologyKey: {{ $root.Values.scheduling.topologyKey }}
        labelSelector:
          matchLabels:
            {{- include "eth-enclave.nodeSelectorLabels" . | nindent 12 }}
  {{- else if eq $anti "soft" }}
  podAntiAffinity:
    preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 100
        podAffinityTerm:
          topologyKey: {{ $root.Values.scheduling.topologyKey }}
          labelSelector:
            matchLabels:
              {{- include "eth-enclave.nodeSelectorLabels" . | nindent 14 }}
  {{- end }}
{{- end }}
{{- end }}

{{/*
Environment every ethwatch container gets (the sidecars and the network watcher): pod identity from
the downward API (resource attributes of its traces) and, when tracing is on, the standard OTLP
variables.
*/}}
{{- define "eth-enclave.sidecarEnv" -}}
- name: RUST_LOG
  value: {{ .Values.ethwatch.logLevel | quote }}
- name: ETHWATCH_LOG_FORMAT
  value: {{ .Values.ethwatch.logFormat | quote }}
- name: ETHWATCH_WEB_LISTEN_ADDRESS
  value: "0.0.0.0:{{ .Values.ethwatch.port }}"
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: NODE_NAME
  valueFrom:
    fieldRef:
      fieldPath: spec.nodeName
{{- if .Values.tracing.enabled }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ .Values.tracing.endpoint | quote }}
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: {{ .Values.tracing.protocol | quote }}
- name: OTEL_TRACES_SAMPLER
  value: {{ .Values.tracing.sampler | quote }}
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ .Values.tracing.samplerArg | quote }}
{{- end }}
{{- with .Values.ethwatch.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Label selector of the network watcher: this release's execution and beacon pods (name and instance,
so two releases in one namespace stay two enclaves; validators, tests and the watcher itself are
left out of the watch).
*/}}
{{- define "eth-enclave.networkSelector" -}}
{{- printf "app.kubernetes.io/name=%s,app.kubernetes.io/instance=%s,app.kubernetes.io/component in (execution,beacon)" (include "eth-enclave.name" .) .Release.Name -}}
{{- end }}

{{/*
Plain Prometheus annotations for the ethwatch port (node pods and the network watcher).
*/}}
{{- define "eth-enclave.scrapeAnnotations" -}}
{{- if .Values.monitoring.podAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .Values.ethwatch.port | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- end }}

{{/*
Shell snippet that waits with exponential backoff (2 s doubling to 30 s): used by init containers.
*/}}
{{- define "eth-enclave.backoff" -}}
backoff() { sleep "$delay"; delay=$((delay * 2)); [ "$delay" -gt 30 ] && delay=30; return 0; }
delay=2
{{- end }}

{{/*
Init container that turns the genesis ConfigMap into a Lighthouse --testnet-dir (genesis.ssz is
stored gzipped: the uncompressed mainnet-preset state is over the 1 MiB ConfigMap limit).
*/}}
{{- define "eth-enclave.testnetDirInit" -}}
- name: testnet-dir
  image: {{ include "eth-enclave.image" (dict "image" .Values.toolsImage) }}
  imagePullPolicy: {{ .Values.toolsImage.pullPolicy }}
  command: ["/bin/sh", "-ec"]
  args:
    - |
      cd /genesis
      for f in config.yaml deposit_contract.txt deposit_contract_block.txt deposit_contract_block_hash.txt genesis_validators_root.txt; do
        if [ -f "$f" ]; then cp "$f" /network-configs/; fi
      done
      cp deposit_contract_block.txt /network-configs/deploy_block.txt
      gunzip -c genesis.ssz.gz > /network-configs/genesis.ssz
      echo "testnet dir ready: genesis_validators_root $(cat genesis_validators_root.txt 2>/dev/null)"
  securityContext:
    {{- toYaml .Values.containerSecurityContext | nindent 4 }}
  resources:
    {{- include "eth-enclave.resources" (dict "resources" .Values.utilityResources "limit" (list .Values.emptyDir.networkConfigs)) | nindent 4 }}
  volumeMounts:
    - name: genesis
      mountPath: /genesis
      readOnly: true
    - name: network-configs
      mountPath: /network-configs
{{- end }}

{{/*
The ethwatch sidecar of a node pod (execution.yaml, beacon.yaml): (dict "root" $ "args" (list ...)).
It reads the node's data volume read-only (it only reports its usage, statvfs) and, with
monitoring.webConfig, serves /metrics over TLS and/or with basic auth.
*/}}
{{- define "eth-enclave.sidecar" -}}
{{- $root := .root -}}
- name: ethwatch
  image: {{ include "eth-enclave.image" (dict "image" $root.Values.ethwatch.image "default" $root.Chart.AppVersion) }}
  imagePullPolicy: {{ $root.Values.ethwatch.image.pullPolicy }}
  args:
    {{- range .args }}
    - {{ . | quote }}
    {{- end }}
    {{- include "eth-enclave.webConfigArgs" $root | nindent 4 }}
  env:
    {{- include "eth-enclave.sidecarEnv" $root | nindent 4 }}
  ports:
    - name: ethwatch
      containerPort: {{ $root.Values.ethwatch.port }}
  readinessProbe:
    {{- include "eth-enclave.probe" (dict "root" $root "probe" $root.Values.ethwatch.readinessProbe) | nindent 4 }}
  livenessProbe:
    {{- include "eth-enclave.probe" (dict "root" $root "probe" $root.Values.ethwatch.livenessProbe) | nindent 4 }}
  securityContext:
    {{- toYaml $root.Values.containerSecurityContext | nindent 4 }}
  resources:
    {{- toYaml $root.Values.ethwatch.resources | nindent 4 }}
  volumeMounts:
    - name: data
      mountPath: /data
      readOnly: true
    {{- include "eth-enclave.webConfigMounts" $root | nindent 4 }}
{{- end }}

{{/*
A node's headless Service (execution.yaml, beacon.yaml): stable DNS names for peering, the paired
node and scraping. The p2p ports, then the layer's own `extra` ports, then metrics and ethwatch:
(dict "ctx" $ctx "name" <Service name> "ports" <the layer's ports values>
      "extra" (list (dict "name" "rpc" "port" 8545 ["protocol" "UDP"]) ...)).
*/}}
{{- define "eth-enclave.headlessService" -}}
{{- $ports := .ports -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ .name }}
  namespace: {{ .ctx.root.Release.Namespace }}
  labels:
    {{- include "eth-enclave.nodeLabels" .ctx | nindent 4 }}
    eth-enclave/headless: "true"
spec:
  clusterIP: None
  # Peers, the paired node and Prometheus must find a node that is not ready yet (syncing).
  publishNotReadyAddresses: true
  selector:
    {{- include "eth-enclave.nodeSelectorLabels" .ctx | nindent 4 }}
  ports:
    - name: p2p-tcp
      port: {{ $ports.p2p }}
      targetPort: p2p-tcp
      protocol: TCP
    - name: p2p-udp
      port: {{ $ports.p2p }}
      targetPort: p2p-udp
      protocol: UDP
    {{- range .extra }}
    - name: {{ .name }}
      port: {{ .port }}
      targetPort: {{ .name }}
      {{- with .protocol }}
      protocol: {{ . }}
      {{- end }}
    {{- end }}
    - name: metrics
      port: {{ $ports.metrics }}
      targetPort: metrics
    - name: ethwatch
      port: {{ .ctx.root.Values.ethwatch.port }}
      targetPort: ethwatch
{{- end }}

{{/*
A node StatefulSet's volume claim template: (dict "root" $ "ctx" $ctx "name" "data" "size" "200Gi").
*/}}
{{- define "eth-enclave.volumeClaim" -}}
- metadata:
    name: {{ .name }}
    labels:
      {{- include "eth-enclave.nodeSelectorLabels" .ctx | nindent 6 }}
  spec:
    accessModes:
      {{- toYaml .root.Values.storage.accessModes | nindent 6 }}
    {{- with .root.Values.storage.storageClassName }}
    storageClassName: {{ . }}
    {{- end }}
    resources:
      requests:
        storage: {{ .size }}
{{- end }}

{{/*
An ethwatch probe from values: (dict "root" $ "probe" $probe). With TLS on the listener
(monitoring.webConfig.tls) an httpGet probe gets scheme HTTPS (kubelet does not verify the
certificate); /healthz and /readyz need no credentials, so basic auth changes nothing here.
*/}}
{{- define "eth-enclave.probe" -}}
{{- $probe := deepCopy .probe -}}
{{- if and (include "eth-enclave.webTls" .root) (hasKey $probe "httpGet") -}}
{{- $_ := set $probe.httpGet "scheme" "HTTPS" -}}
{{- end -}}
{{- toYaml $probe -}}
{{- end }}

{{/*
A Kubernetes quantity (512Mi, 1Gi, 2G, 1000000) in MiB, rounded up.
*/}}
{{- define "eth-enclave.mebibytes" -}}
{{- $q := toString . -}}
{{- $num := regexFind "^[0-9]+(\\.[0-9]+)?" $q -}}
{{- $unit := trimPrefix $num $q -}}
{{- $per := dict "" 0.00000095367431640625 "k" 0.00095367431640625 "Ki" 0.0009765625 "M" 0.95367431640625 "Mi" 1.0 "G" 953.67431640625 "Gi" 1024.0 "T" 976562.5 "Ti" 1048576.0 -}}
{{- if or (not $num) (not (hasKey $per $unit)) -}}
{{- fail (printf "%q is not a storage quantity this chart understands (use Ki, Mi, Gi, Ti, k, M, G, T or bytes)" $q) -}}
{{- end -}}
{{- mulf (float64 $num) (get $per $unit) | ceil | int64 -}}
{{- end }}

{{/*
A container's resources with its emptyDir volumes added to ephemeral-storage:
(dict "resources" $r "limit" (list "1Gi" ...) "request" (list ...)). The sizes in "limit" are
added to limits.ephemeral-storage, those in "request" to requests.ephemeral-storage too (a data
volume the scheduler must find room for). A limit or request the values leave out stays out.
*/}}
{{- define "eth-enclave.resources" -}}
{{- $r := deepCopy (.resources | default dict) -}}
{{- range $kind, $sizes := dict "limits" (concat (.limit | default list) (.request | default list)) "requests" (.request | default list) -}}
{{- $block := get $r $kind | default dict -}}
{{- if and $sizes (hasKey $block "ephemeral-storage") -}}
{{- $mi := include "eth-enclave.mebibytes" (get $block "ephemeral-storage") | int64 -}}
{{- range $sizes }}{{ $mi = add $mi (include "eth-enclave.mebibytes" . | int64) }}{{ end -}}
{{- $_ := set $block "ephemeral-storage" (printf "%dMi" $mi) -}}
{{- end -}}
{{- end -}}
{{- toYaml $r -}}
{{- end }}
