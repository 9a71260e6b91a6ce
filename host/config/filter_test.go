package config

import "testing"

func TestFilterProblem(t *testing.T) {
	for in, want := range map[string]string{
		"route.>":      "",
		">":            "",
		"*":            "",
		"route.*.v1":   "",
		"a-b_c/d=e.F9": "",
		"":             "empty filter",
		"route..x":     "empty token",
		".route":       "empty token",
		"route.":       "empty token",
		"route.>.x":    "'>' must be the last token",
		"route.a*":     `wildcard in token "a*": '*' and '>' must be whole tokens`,
		"route.>x":     `wildcard in token ">x": '*' and '>' must be whole tokens`,
		"route. x":     "contains whitespace",
		"route.\tx":    "contains whitespace",
		"route:x":      `character ':' is not allowed in a KV key`,
		"routé":        `character 'é' is not allowed in a KV key`,
	} {
		if got := filterProblem(in); got != want {
			t.Errorf("filterProblem(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestFiltersOverlap(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"route.>", "route.a", true},
		{"route.>", "route.a.b", true},
		{"route.>", "route", false},
		{"route.*", "route.a", true},
		{"route.*", "route.a.b", false},
		{"route.a", "route.a", true},
		{"route.a", "route.b", false},
		{"*.a", "b.*", true},
		{"*.a", "b.c", false},
		{">", "x", true},
		{"a.b", "a.b.c", false},
		{"a.*.c", "a.b.>", true},
	}
	for _, tt := range tests {
		if got := filtersOverlap(tt.a, tt.b); got != tt.want {
			t.Errorf("filtersOverlap(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
		if got := filtersOverlap(tt.b, tt.a); got != tt.want {
			t.Errorf("filtersOverlap(%q, %q) = %v, want %v", tt.b, tt.a, got, tt.want)
		}
	}
}
