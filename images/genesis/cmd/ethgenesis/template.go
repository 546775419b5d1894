package main

import (
	"fmt"
	"regexp"
	"strings"
)

var varName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// expand replaces ${NAME} and ${NAME:-default} in a template with values from lookup, as a
// shell would (the default is itself expanded, and used when NAME is unset or empty). A NAME
// without a default that lookup does not know is an error naming it, so a missing values.env
// key is reported instead of written as an empty field. Nothing else is special: a lone `$`
// stays as it is.
func expand(s string, lookup func(string) (string, bool)) (string, error) {
	var b strings.Builder
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			return b.String(), nil
		}
		b.WriteString(s[:i])
		// The matching brace: defaults may hold braces ({} for an empty map).
		depth, end := 0, -1
		for j := i + 1; j < len(s); j++ {
			if s[j] == '{' {
				depth++
			} else if s[j] == '}' {
				depth--
				if depth == 0 {
					end = j
					break
				}
			}
		}
		if end < 0 {
			return "", fmt.Errorf("unterminated ${ at %q", abbreviate(s[i:]))
		}
		inner := s[i+2 : end]
		name, def, hasDef := strings.Cut(inner, ":-")
		if !varName.MatchString(name) {
			return "", fmt.Errorf("bad variable reference ${%s}", inner)
		}
		v, ok := lookup(name)
		switch {
		case ok && v != "":
			b.WriteString(v)
		case hasDef:
			d, err := expand(def, lookup)
			if err != nil {
				return "", err
			}
			b.WriteString(d)
		case ok:
			// Set but empty, no default: empty, as the shell does.
		default:
			return "", fmt.Errorf("%s is not set (values.env) and ${%s} has no default", name, name)
		}
		s = s[end+1:]
	}
}

func abbreviate(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
