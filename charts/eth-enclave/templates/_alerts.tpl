{{- /*
Helpers of the alert rules in files/alerts/*.yaml. Those files are alerts/templates/*.yaml with every
${key} turned into a Helm expression by alerts/generate.py --chart (run by scripts/sync-chart.sh);
these helpers do what the generator does with a value, so that for the same values the chart's
rules are the generator's (tests/chart/test_alerts.py compares them):

  fmt   (list value filter path)  ${key} (filter ""), ${key|seconds}, ${key|percent}, ${key|le}
  expr  string                    drops what an empty selector leaves ({} , {, a}, {a, }) -> JSON
  for   (list duration path)      the rule's `for:` line, none for a zero duration
*/ -}}

{{- /* A number as PromQL and the generator write it: 3, 0.05, 1.5. */ -}}
{{- define "eth-enclave.alerts.number" -}}
{{- $f := float64 . -}}
{{- if eq $f (floor $f) }}{{ printf "%d" (int64 $f) }}{{ else }}{{ printf "%v" $f }}{{ end -}}
{{- end -}}

{{- /* A Prometheus duration in seconds, as a number. */ -}}
{{- define "eth-enclave.alerts.seconds" -}}
{{- $v := index . 0 -}}
{{- $path := index . 1 -}}
{{- if not (and (kindIs "string" $v) (regexMatch "^(?:[0-9]+(?:ms|s|m|h|d|w|y))+$" (toString $v))) -}}
{{- fail (printf "monitoring.prometheusRule.%s: '%v' is not a Prometheus duration" $path $v) -}}
{{- end -}}
{{- $unit := dict "ms" 1 "s" 1000 "m" 60000 "h" 3600000 "d" 86400000 "w" 604800000 "y" 31536000000 -}}
{{- $ms := 0 -}}
{{- range $part := regexFindAll "[0-9]+(?:ms|s|m|h|d|w|y)" $v -1 -}}
{{- $n := regexFind "^[0-9]+" $part -}}
{{- $ms = add $ms (mul (int64 $n) (get $unit (trimPrefix $n $part))) -}}
{{- end -}}
{{- include "eth-enclave.alerts.number" (divf $ms 1000) -}}
{{- end -}}

{{- define "eth-enclave.alerts.fmt" -}}
{{- $v := index . 0 -}}
{{- $filter := index . 1 -}}
{{- $path := index . 2 -}}
{{- $isNumber := and (or (kindIs "float64" $v) (kindIs "int64" $v) (kindIs "int" $v)) (not (kindIs "bool" $v)) -}}
{{- if eq $filter "seconds" -}}
{{- include "eth-enclave.alerts.seconds" (list $v $path) -}}
{{- else if not $isNumber -}}
{{- if and (eq $filter "") (kindIs "string" $v) -}}
{{- $v -}}
{{- else -}}
{{- fail (printf "monitoring.prometheusRule.%s: %v cannot be put into a rule%s" $path $v (ternary "" (printf " (|%s needs a number)" $filter) (eq $filter ""))) -}}
{{- end -}}
{{- else if eq $filter "" -}}
{{- include "eth-enclave.alerts.number" $v -}}
{{- else if eq $filter "percent" -}}
{{- include "eth-enclave.alerts.number" (round (mulf (float64 $v) 100) 6) -}}%
{{- else if eq $filter "le" -}}
{{- /* Bucket bounds as the exporters' Rust client writes them: always with a decimal point. */ -}}
{{- $f := float64 $v -}}
{{- if eq $f (floor $f) }}{{ printf "%d.0" (int64 $f) }}{{ else }}{{ printf "%v" $f }}{{ end -}}
{{- else -}}
{{- fail (printf "monitoring.prometheusRule.%s: unknown filter '|%s'" $path $filter) -}}
{{- end -}}
{{- end -}}

{{- define "eth-enclave.alerts.expr" -}}
{{- $e := regexReplaceAll "\\{\\s*,\\s*" . "{" -}}
{{- $e = regexReplaceAll ",\\s*\\}" $e "}" -}}
{{- $e = regexReplaceAll "\\{\\s*\\}" $e "" -}}
{{- $e = regexReplaceAll "\\n+$" $e "" -}}
{{- if contains "\n" $e }}{{ $e = print $e "\n" }}{{ end -}}
{{- toJson $e -}}
{{- end -}}

{{- define "eth-enclave.alerts.for" -}}
{{- if gt (include "eth-enclave.alerts.seconds" .  | float64) 0.0 }}
    for: {{ index . 0 | toJson }}
{{- end -}}
{{- end -}}
