package testenv

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Metrics reads a /metrics answer (and closes its body): each series by
// name and labels (name{k="v",...} as the text format writes them, labels
// sorted).
func Metrics(t testing.TB, resp *http.Response) map[string]float64 {
	t.Helper()
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics answered %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for name, fam := range fams {
		for _, m := range fam.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			key := name
			if len(labels) > 0 {
				key += "{" + strings.Join(labels, ",") + "}"
			}
			out[key] = metricValue(m)
		}
	}
	return out
}

// Scrape reads the /metrics of the API at addr (host:port, plain HTTP).
func Scrape(t testing.TB, addr string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	return Metrics(t, resp)
}

// Counter is the series name of m as a count; the test fails if m has
// none.
func Counter(t testing.TB, m map[string]float64, name string) int {
	t.Helper()
	v, ok := m[name]
	if !ok {
		t.Fatalf("no %s in /metrics", name)
	}
	return int(v)
}

func metricValue(m *dto.Metric) float64 {
	switch {
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	}
	return -1
}
