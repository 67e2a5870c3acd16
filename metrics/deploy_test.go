package metrics

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	dto "github.com/prometheus/client_model/go"

	"github.com/klavi-billing/billingd/leader"
	"github.com/klavi-billing/billingd/storage/kv"
)

// The dashboard and the alert rules name metrics by string; these tests hold them to
// what New registers, so a rename here breaks the build, not a 3 a.m. page.

const (
	dashboardFile = "../deploy/grafana/billingd.json"
	k8sFile       = "../deploy/kubernetes/billingd.yaml"
	alertsFile    = "../deploy/prometheus/alerts.yaml"
	alertTestFile = "../deploy/prometheus/alerts_test.yaml"
	operationsDoc = "../docs/OPERATIONS.md"
	runbookPrefix = "https://github.com/klavi-billing/billingd/blob/main/docs/OPERATIONS.md#"
)

// metricName matches the metric names an expression can use from billingd's
// registry: its own, and the Go and process collectors'.
var metricName = regexp.MustCompile(`\b(?:billingd|go|process)_[a-zA-Z0-9_]*[a-zA-Z0-9]`)

// exposedNames returns every series name the registry of a populated Metrics exposes,
// with the _bucket, _sum and _count series of histograms, and the families of a
// replica on etcd (the election's, the store engine's).
func exposedNames(t *testing.T) map[string]bool {
	t.Helper()
	m := populated(t)
	m.SetLeader(leader.Status{Role: leader.Leader, Fence: kv.Fence{Key: "/billingd/leader/1", Rev: 7}, Since: t0})
	m.SetStoreEngine("etcd")
	mfs, err := m.Registry().Gather()
	require.NoError(t, err)
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
		if mf.GetType() == dto.MetricType_HISTOGRAM {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				names[mf.GetName()+s] = true
			}
		}
	}
	return names
}

type grafanaDS struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type grafanaPanel struct {
	ID         int             `json:"id"`
	Type       string          `json:"type"`
	Title      string          `json:"title"`
	Datasource *grafanaDS      `json:"datasource"`
	Panels     []*grafanaPanel `json:"panels"`
	Targets    []struct {
		Datasource *grafanaDS `json:"datasource"`
		Expr       string     `json:"expr"`
		RefID      string     `json:"refId"`
	} `json:"targets"`
}

type grafanaDashboard struct {
	Title      string          `json:"title"`
	UID        string          `json:"uid"`
	Panels     []*grafanaPanel `json:"panels"`
	Templating struct {
		List []struct {
			Name       string     `json:"name"`
			Type       string     `json:"type"`
			Query      any        `json:"query"`
			Datasource *grafanaDS `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
}

func loadDashboard(t *testing.T) *grafanaDashboard {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	require.NoError(t, err)
	var d grafanaDashboard
	dec := json.NewDecoder(strings.NewReader(string(b)))
	require.NoError(t, dec.Decode(&d), "the dashboard is valid JSON")
	require.False(t, dec.More(), "nothing after the dashboard object")
	return &d
}

// allPanels flattens rows (collapsed rows nest their panels).
func allPanels(ps []*grafanaPanel) []*grafanaPanel {
	var out []*grafanaPanel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, allPanels(p.Panels)...)
	}
	return out
}

func TestDashboard(t *testing.T) {
	d := loadDashboard(t)
	panels := allPanels(d.Panels)
	require.NotEmpty(t, panels)
	assert.Equal(t, "billingd", d.UID)

	t.Run("datasource variable", func(t *testing.T) {
		require.NotEmpty(t, d.Templating.List)
		v := d.Templating.List[0]
		assert.Equal(t, "datasource", v.Name)
		assert.Equal(t, "datasource", v.Type)
		assert.Equal(t, "prometheus", v.Query)
		for _, v := range d.Templating.List[1:] {
			require.NotNil(t, v.Datasource, v.Name)
			assert.Equal(t, grafanaDS{"prometheus", "${datasource}"}, *v.Datasource, "variable %s", v.Name)
		}
	})

	t.Run("unique panel ids", func(t *testing.T) {
		seen := map[int]string{}
		for _, p := range panels {
			assert.NotZero(t, p.ID, "panel %q has no id", p.Title)
			if prev, ok := seen[p.ID]; ok {
				t.Errorf("panel id %d is used by %q and %q", p.ID, prev, p.Title)
			}
			seen[p.ID] = p.Title
		}
	})

	t.Run("rows", func(t *testing.T) {
		var rows []string
		for _, p := range panels {
			if p.Type == "row" {
				rows = append(rows, p.Title)
			}
		}
		assert.Equal(t, []string{"Overview", "Klavi API", "Retries", "Storage and process", "Replicas"}, rows)
	})

	t.Run("every panel queries $datasource", func(t *testing.T) {
		for _, p := range panels {
			if p.Type == "row" {
				continue
			}
			require.NotNil(t, p.Datasource, "panel %q", p.Title)
			assert.Equal(t, grafanaDS{"prometheus", "${datasource}"}, *p.Datasource, "panel %q", p.Title)
			require.NotEmpty(t, p.Targets, "panel %q has no query", p.Title)
			for _, tg := range p.Targets {
				require.NotNil(t, tg.Datasource, "panel %q target %s", p.Title, tg.RefID)
				assert.Equal(t, grafanaDS{"prometheus", "${datasource}"}, *tg.Datasource, "panel %q target %s", p.Title, tg.RefID)
				assert.NotEmpty(t, tg.Expr, "panel %q target %s", p.Title, tg.RefID)
			}
		}
	})

	t.Run("expressions use registered metrics", func(t *testing.T) {
		names := exposedNames(t)
		used := map[string]bool{}
		for _, p := range panels {
			for _, tg := range p.Targets {
				for _, n := range metricName.FindAllString(tg.Expr, -1) {
					used[n] = true
					assert.True(t, names[n], "panel %q uses %s, which billingd does not export", p.Title, n)
				}
			}
		}
		// The overview's questions are all asked.
		for _, n := range []string{
			"billingd_payments_submitted_total", "billingd_payments_completed_total", "billingd_payments_rejected_total",
			"billingd_payments_unconfirmed_total", "billingd_payments_missed_total", "billingd_scheduler_lag_seconds",
			"billingd_klavi_requests_total", "billingd_klavi_request_duration_seconds_bucket", "billingd_klavi_token_refreshes_total",
			"billingd_retries_planned_total", "billingd_retries_sent_total", "billingd_retries_dropped_total",
			"billingd_db_size_bytes", "billingd_db_inuse_bytes", "process_resident_memory_bytes", "go_goroutines",
			"billingd_due_scan_duration_seconds_bucket", "billingd_status_poll_duration_seconds_bucket",
			"billingd_leader", "billingd_leader_elections_total", "billingd_leader_changes_total",
			"billingd_leader_last_change_timestamp_seconds", "billingd_leader_fence_revision", "billingd_store_info",
		} {
			assert.True(t, used[n], "the dashboard does not show %s", n)
		}
	})

	t.Run("expressions parse", func(t *testing.T) {
		promtool := lookPromtool(t)
		var rules strings.Builder
		rules.WriteString("groups:\n  - name: dashboard\n    rules:\n")
		r := strings.NewReplacer("$__rate_interval", "5m", "$__range", "1d", "$job", ".+", "$instance", ".+")
		n := 0
		for _, p := range panels {
			for _, tg := range p.Targets {
				n++
				expr, err := json.Marshal(r.Replace(tg.Expr)) // a JSON string is a YAML string
				require.NoError(t, err)
				fmt.Fprintf(&rules, "      - record: dashboard:panel%d:%s\n        expr: %s\n", p.ID, tg.RefID, expr)
			}
		}
		f := filepath.Join(t.TempDir(), "dashboard-rules.yaml")
		require.NoError(t, os.WriteFile(f, []byte(rules.String()), 0o600))
		out, err := exec.Command(promtool, "check", "rules", f).CombinedOutput()
		require.NoError(t, err, "%s", out)
		assert.Contains(t, string(out), fmt.Sprintf("SUCCESS: %d rules found", n))
	})
}

type alertRule struct {
	Alert       string            `yaml:"alert"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

func loadAlerts(t *testing.T) []alertRule {
	t.Helper()
	b, err := os.ReadFile(alertsFile)
	require.NoError(t, err)
	var f struct {
		Groups []struct {
			Name  string      `yaml:"name"`
			Rules []alertRule `yaml:"rules"`
		} `yaml:"groups"`
	}
	require.NoError(t, yaml.Unmarshal(b, &f))
	var rules []alertRule
	for _, g := range f.Groups {
		rules = append(rules, g.Rules...)
	}
	require.NotEmpty(t, rules)
	return rules
}

// githubAnchors returns the anchors GitHub gives the headings of a Markdown file.
func githubAnchors(t *testing.T, path string) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	drop := regexp.MustCompile(`[^\p{L}\p{N} _-]`)
	anchors := map[string]bool{}
	inCode := false
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "```") {
			inCode = !inCode
		}
		if inCode || !strings.HasPrefix(line, "#") {
			continue
		}
		h := strings.TrimSpace(strings.TrimLeft(line, "#"))
		h = drop.ReplaceAllString(strings.ToLower(h), "")
		anchors[strings.ReplaceAll(h, " ", "-")] = true
	}
	return anchors
}

func TestAlerts(t *testing.T) {
	rules := loadAlerts(t)
	names := exposedNames(t)
	anchors := githubAnchors(t, operationsDoc)

	var alerts []string
	for _, r := range rules {
		t.Run(r.Alert, func(t *testing.T) {
			require.NotEmpty(t, r.Alert, "every rule is an alert")
			alerts = append(alerts, r.Alert)
			assert.Contains(t, []string{"critical", "warning", "info"}, r.Labels["severity"])
			for _, a := range []string{"summary", "description", "runbook_url"} {
				assert.NotEmpty(t, r.Annotations[a], a)
			}
			anchor, ok := strings.CutPrefix(r.Annotations["runbook_url"], runbookPrefix)
			require.True(t, ok, "runbook_url %q points into docs/OPERATIONS.md", r.Annotations["runbook_url"])
			assert.Equal(t, strings.ToLower(r.Alert), anchor, "the runbook section is named after the alert")
			assert.True(t, anchors[anchor], "docs/OPERATIONS.md has no section #%s", anchor)
			for _, n := range metricName.FindAllString(r.Expr, -1) {
				assert.True(t, names[n], "%s uses %s, which billingd does not export", r.Alert, n)
			}
		})
	}
	assert.Len(t, slices.Compact(slices.Sorted(slices.Values(alerts))), len(alerts), "alert names are unique")

	t.Run("every alert is tested firing and not firing", func(t *testing.T) {
		b, err := os.ReadFile(alertTestFile)
		require.NoError(t, err)
		var f struct {
			RuleFiles []string `yaml:"rule_files"`
			Tests     []struct {
				AlertRuleTest []struct {
					Alertname string `yaml:"alertname"`
					ExpAlerts []any  `yaml:"exp_alerts"`
				} `yaml:"alert_rule_test"`
			} `yaml:"tests"`
		}
		require.NoError(t, yaml.Unmarshal(b, &f))
		assert.Equal(t, []string{"alerts.yaml"}, f.RuleFiles)
		firing, quiet := map[string]bool{}, map[string]bool{}
		for _, tc := range f.Tests {
			for _, a := range tc.AlertRuleTest {
				if len(a.ExpAlerts) > 0 {
					firing[a.Alertname] = true
				} else {
					quiet[a.Alertname] = true
				}
			}
		}
		for _, a := range alerts {
			assert.True(t, firing[a], "%s is never tested firing", a)
			assert.True(t, quiet[a], "%s is never tested not firing", a)
		}
	})

	t.Run("promtool", func(t *testing.T) {
		promtool := lookPromtool(t)
		out, err := exec.Command(promtool, "check", "rules", alertsFile).CombinedOutput()
		require.NoError(t, err, "%s", out)
		out, err = exec.Command(promtool, "test", "rules", alertTestFile).CombinedOutput()
		require.NoError(t, err, "%s", out)
	})
}

// lookPromtool returns promtool's path, or skips: deploy/prometheus/check.sh runs the
// same checks in CI and fails there when promtool is missing.
func lookPromtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (Debian: apt-get install prometheus)")
	}
	return p
}

// TestOperationsDoc_links checks the runbook's own links land on its sections.
func TestOperationsDoc_links(t *testing.T) {
	b, err := os.ReadFile(operationsDoc)
	require.NoError(t, err)
	anchors := githubAnchors(t, operationsDoc)
	links := regexp.MustCompile(`\]\(#([^)]+)\)`).FindAllStringSubmatch(string(b), -1)
	require.NotEmpty(t, links)
	for _, l := range links {
		assert.True(t, anchors[l[1]], "docs/OPERATIONS.md links to #%s, which is not a section", l[1])
	}
}

// TestMetrics_promtoolCheckMetrics lints a scrape of the handler with promtool, as
// Prometheus's own tooling sees it.
func TestMetrics_promtoolCheckMetrics(t *testing.T) {
	promtool := lookPromtool(t)
	body := scrape(t, populated(t))
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Empty(t, strings.TrimSpace(string(out)))
}

// k8sObject is the part of a Kubernetes object the manifest's checks read.
type k8sObject struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name   string            `yaml:"name"`
		Labels map[string]string `yaml:"labels"`
	} `yaml:"metadata"`
	Data map[string]string `yaml:"data"`
	Spec struct {
		Replicas *int `yaml:"replicas"`
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		MaxUnavailable any `yaml:"maxUnavailable"`
		Template       struct {
			Metadata struct {
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"metadata"`
			Spec k8sPodSpec `yaml:"spec"`
		} `yaml:"template"`
		// A Service's.
		ServiceSelector map[string]string `yaml:"-"`
		Ports           []struct {
			Name       string `yaml:"name"`
			Port       int    `yaml:"port"`
			TargetPort any    `yaml:"targetPort"`
		} `yaml:"ports"`
	} `yaml:"spec"`
}

type k8sProbe struct {
	HTTPGet struct {
		Path string `yaml:"path"`
		Port any    `yaml:"port"`
	} `yaml:"httpGet"`
}

type k8sPodSpec struct {
	AutomountServiceAccountToken  *bool `yaml:"automountServiceAccountToken"`
	TerminationGracePeriodSeconds int   `yaml:"terminationGracePeriodSeconds"`
	SecurityContext               struct {
		RunAsNonRoot *bool `yaml:"runAsNonRoot"`
		RunAsUser    int   `yaml:"runAsUser"`
	} `yaml:"securityContext"`
	Affinity struct {
		PodAntiAffinity struct {
			Required []struct {
				TopologyKey string `yaml:"topologyKey"`
			} `yaml:"requiredDuringSchedulingIgnoredDuringExecution"`
		} `yaml:"podAntiAffinity"`
	} `yaml:"affinity"`
	Containers []struct {
		Name  string   `yaml:"name"`
		Image string   `yaml:"image"`
		Args  []string `yaml:"args"`
		Ports []struct {
			Name          string `yaml:"name"`
			ContainerPort int    `yaml:"containerPort"`
		} `yaml:"ports"`
		ReadinessProbe  *k8sProbe `yaml:"readinessProbe"`
		LivenessProbe   *k8sProbe `yaml:"livenessProbe"`
		SecurityContext struct {
			AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
			ReadOnlyRootFilesystem   *bool `yaml:"readOnlyRootFilesystem"`
			Capabilities             struct {
				Drop []string `yaml:"drop"`
			} `yaml:"capabilities"`
		} `yaml:"securityContext"`
		Resources struct {
			Requests map[string]string `yaml:"requests"`
			Limits   map[string]string `yaml:"limits"`
		} `yaml:"resources"`
		VolumeMounts []struct {
			Name      string `yaml:"name"`
			MountPath string `yaml:"mountPath"`
		} `yaml:"volumeMounts"`
	} `yaml:"containers"`
	Volumes []struct {
		Name      string `yaml:"name"`
		ConfigMap *struct {
			Name string `yaml:"name"`
		} `yaml:"configMap"`
		Secret *struct {
			SecretName string `yaml:"secretName"`
		} `yaml:"secret"`
		EmptyDir any `yaml:"emptyDir"`
	} `yaml:"volumes"`
}

// loadK8s decodes every document of the manifest, by kind.
func loadK8s(t *testing.T) map[string]k8sObject {
	t.Helper()
	f, err := os.Open(k8sFile)
	require.NoError(t, err)
	defer f.Close()
	dec := yaml.NewDecoder(f)
	objs := map[string]k8sObject{}
	for {
		var raw struct {
			Spec struct {
				Selector any `yaml:"selector"`
			} `yaml:"spec"`
		}
		var node yaml.Node
		err := dec.Decode(&node)
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err, "the manifest is YAML")
		var o k8sObject
		require.NoError(t, node.Decode(&o))
		require.NoError(t, node.Decode(&raw))
		require.NotEmpty(t, o.Kind, "every document is an object")
		require.NotContains(t, objs, o.Kind, "one %s", o.Kind)
		if o.Kind == "Service" {
			sel, _ := raw.Spec.Selector.(map[string]any)
			o.Spec.ServiceSelector = map[string]string{}
			for k, v := range sel {
				o.Spec.ServiceSelector[k] = fmt.Sprint(v)
			}
		}
		objs[o.Kind] = o
	}
	return objs
}

// subset reports whether every label of sel is in labels (a selector selects them).
func subset(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return len(sel) > 0
}

// TestKubernetesManifest holds deploy/kubernetes/billingd.yaml to what billingd
// serves and needs; cmd/billingd's TestKubernetesConfig loads its config.
func TestKubernetesManifest(t *testing.T) {
	objs := loadK8s(t)
	kinds := slices.Sorted(maps.Keys(objs))
	assert.Equal(t, []string{"ConfigMap", "Deployment", "PodDisruptionBudget", "Service"}, kinds,
		"interchangeable replicas: a Deployment, no StatefulSet; the Secrets live elsewhere")
	d := objs["Deployment"]
	pod := d.Spec.Template.Spec
	labels := d.Spec.Template.Metadata.Labels

	t.Run("replicas", func(t *testing.T) {
		require.NotNil(t, d.Spec.Replicas)
		assert.Equal(t, 3, *d.Spec.Replicas)
		assert.True(t, subset(d.Spec.Selector.MatchLabels, labels), "the Deployment selects its pods")
		assert.True(t, subset(objs["Service"].Spec.ServiceSelector, labels), "the Service selects the pods")
		assert.True(t, subset(objs["PodDisruptionBudget"].Spec.Selector.MatchLabels, labels), "the budget covers the pods")
		assert.EqualValues(t, 1, objs["PodDisruptionBudget"].Spec.MaxUnavailable)
		require.NotEmpty(t, pod.Affinity.PodAntiAffinity.Required)
		assert.Equal(t, "kubernetes.io/hostname", pod.Affinity.PodAntiAffinity.Required[0].TopologyKey, "one replica per node")
	})

	require.Len(t, pod.Containers, 1)
	c := pod.Containers[0]
	t.Run("probes and port", func(t *testing.T) {
		require.Len(t, c.Ports, 1)
		assert.Equal(t, "http", c.Ports[0].Name)
		port := c.Ports[0].ContainerPort
		require.NotNil(t, c.ReadinessProbe)
		require.NotNil(t, c.LivenessProbe)
		assert.Equal(t, "/readyz", c.ReadinessProbe.HTTPGet.Path)
		assert.Equal(t, "/healthz", c.LivenessProbe.HTTPGet.Path, "never /readyz: an etcd outage would restart every replica")
		assert.Equal(t, "http", c.ReadinessProbe.HTTPGet.Port)
		assert.Equal(t, "http", c.LivenessProbe.HTTPGet.Port)
		ann := d.Spec.Template.Metadata.Annotations
		assert.Equal(t, "true", ann["prometheus.io/scrape"])
		assert.Equal(t, fmt.Sprint(port), ann["prometheus.io/port"])
		assert.Equal(t, "/metrics", ann["prometheus.io/path"])
		sp := objs["Service"].Spec.Ports
		require.Len(t, sp, 1)
		assert.Equal(t, "http", sp[0].TargetPort)
	})

	t.Run("security", func(t *testing.T) {
		require.NotNil(t, pod.SecurityContext.RunAsNonRoot)
		assert.True(t, *pod.SecurityContext.RunAsNonRoot)
		assert.Equal(t, 65532, pod.SecurityContext.RunAsUser, "the image's nonroot user")
		require.NotNil(t, pod.AutomountServiceAccountToken)
		assert.False(t, *pod.AutomountServiceAccountToken, "billingd never talks to the Kubernetes API")
		sc := c.SecurityContext
		require.NotNil(t, sc.ReadOnlyRootFilesystem)
		assert.True(t, *sc.ReadOnlyRootFilesystem)
		require.NotNil(t, sc.AllowPrivilegeEscalation)
		assert.False(t, *sc.AllowPrivilegeEscalation)
		assert.Equal(t, []string{"ALL"}, sc.Capabilities.Drop)
		assert.NotEmpty(t, c.Resources.Requests["cpu"])
		assert.NotEmpty(t, c.Resources.Requests["memory"])
		assert.NotEmpty(t, c.Resources.Limits["memory"])
		assert.GreaterOrEqual(t, pod.TerminationGracePeriodSeconds, 35, "scheduler.shutdown_timeout (30s) plus the HTTP server's 5s")
	})

	t.Run("config and secrets are mounted", func(t *testing.T) {
		vols := map[string]bool{}
		for _, v := range pod.Volumes {
			vols[v.Name] = true
			if v.ConfigMap != nil {
				assert.Equal(t, objs["ConfigMap"].Metadata.Name, v.ConfigMap.Name)
			}
		}
		mounts := map[string]string{}
		for _, m := range c.VolumeMounts {
			assert.True(t, vols[m.Name], "volumeMount %s has a volume", m.Name)
			mounts[m.Name] = m.MountPath
		}
		i := slices.Index(c.Args, "--config")
		require.True(t, i >= 0 && i+1 < len(c.Args), "args name the config: %v", c.Args)
		cfg := c.Args[i+1]
		assert.Equal(t, "run", c.Args[0])
		assert.Equal(t, filepath.Join(mounts["config"], "billingd.yaml"), cfg)
		assert.Contains(t, objs["ConfigMap"].Data, filepath.Base(cfg))
	})
}
