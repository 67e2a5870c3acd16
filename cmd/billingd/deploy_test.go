package main

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

// k8sDoc is the part of a Kubernetes object TestKubernetesConfig reads.
type k8sDoc struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Data       map[string]string `yaml:"data"`
	StringData map[string]string `yaml:"stringData"`
	Spec       struct {
		Template struct {
			Spec struct {
				Containers []struct {
					Args []string `yaml:"args"`
					Env  []struct {
						Name  string `yaml:"name"`
						Value string `yaml:"value"`
					} `yaml:"env"`
					Ports []struct {
						ContainerPort int `yaml:"containerPort"`
					} `yaml:"ports"`
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
				} `yaml:"volumes"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

// k8sDocs returns the objects of a multi-document manifest by kind/name.
func k8sDocs(t *testing.T, path string) map[string]k8sDoc {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	out := map[string]k8sDoc{}
	dec := yaml.NewDecoder(f)
	for {
		var d k8sDoc
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			return out
		}
		require.NoError(t, err, path)
		out[d.Kind+"/"+d.Metadata.Name] = d
	}
}

// TestKubernetesConfig loads the config of deploy/kubernetes/billingd.yaml's
// ConfigMap as the pod does: the secrets of secrets.example.yaml in files at the
// Deployment's $CREDENTIALS_DIRECTORY, the config at the path its args name.
func TestKubernetesConfig(t *testing.T) {
	objs := k8sDocs(t, "../../deploy/kubernetes/billingd.yaml")
	secrets := k8sDocs(t, "../../deploy/kubernetes/secrets.example.yaml")
	dep, ok := objs["Deployment/billingd"]
	require.True(t, ok, "the Deployment billingd")
	require.Len(t, dep.Spec.Template.Spec.Containers, 1)
	c := dep.Spec.Template.Spec.Containers[0]

	// Where each volume is mounted, and what it holds.
	mountOf := map[string]string{} // volume name → mount path
	for _, m := range c.VolumeMounts {
		mountOf[m.Name] = m.MountPath
	}
	files := map[string]map[string]string{} // mount path → file name → content
	for _, v := range dep.Spec.Template.Spec.Volumes {
		switch {
		case v.ConfigMap != nil:
			cm, ok := objs["ConfigMap/"+v.ConfigMap.Name]
			require.True(t, ok, "volume %s: ConfigMap %s is in the manifest", v.Name, v.ConfigMap.Name)
			files[mountOf[v.Name]] = cm.Data
		case v.Secret != nil:
			s, ok := secrets["Secret/"+v.Secret.SecretName]
			require.True(t, ok, "volume %s: Secret %s is in secrets.example.yaml", v.Name, v.Secret.SecretName)
			files[mountOf[v.Name]] = s.StringData
		}
	}
	// fileAt returns the content the pod sees at path (a mounted key), and whether it exists.
	fileAt := func(path string) (string, bool) {
		body, ok := files[filepath.Dir(path)][filepath.Base(path)]
		return body, ok
	}

	// The pod's file system, laid out under a temporary root.
	root := t.TempDir()
	for dir, fs := range files {
		for name, body := range fs {
			p := filepath.Join(root, dir, name)
			require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o700))
			require.NoError(t, os.WriteFile(p, []byte(body), 0o600))
		}
	}
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	require.NotEmpty(t, env["CREDENTIALS_DIRECTORY"])
	env["CREDENTIALS_DIRECTORY"] = filepath.Join(root, env["CREDENTIALS_DIRECTORY"])

	require.GreaterOrEqual(t, len(c.Args), 3)
	assert.Equal(t, []string{"run", "--config"}, c.Args[:2])
	_, ok = fileAt(c.Args[2])
	require.True(t, ok, "--config %s is a key of a mounted ConfigMap", c.Args[2])
	assert.Equal(t, c.Args[2], env["BILLINGD_CONFIG"], "operator commands run in the pod read the daemon's config")

	cfg, err := LoadConfig(filepath.Join(root, c.Args[2]), withCredentials(func(k string) string { return env[k] }))
	require.NoError(t, err)
	require.NoError(t, cfg.validateForRun(), "the Klavi keys come from the Secret")

	assert.Equal(t, "etcd", cfg.Storage.Backend)
	assert.Len(t, cfg.Storage.Etcd.Endpoints, 3, "a three-member cluster")
	assert.NotEmpty(t, cfg.Storage.Etcd.Username)
	assert.NotEmpty(t, cfg.Storage.Etcd.Password)
	assert.Equal(t, secrets["Secret/billingd-credentials"].StringData["etcd_password"], cfg.Storage.Etcd.Password,
		"the etcd password is read from the Secret")
	assert.GreaterOrEqual(t, len(cfg.HTTP.AdminToken), 16, "the admin token is read from the Secret")
	for key, path := range map[string]string{"cert_file": cfg.Storage.Etcd.CertFile, "key_file": cfg.Storage.Etcd.KeyFile, "ca_file": cfg.Storage.Etcd.CAFile} {
		_, ok := fileAt(path)
		assert.True(t, ok, "storage.etcd.%s %q is a key of a mounted Secret", key, path)
	}
	require.Len(t, c.Ports, 1)
	assert.True(t, strings.HasPrefix(cfg.HTTP.Listen, "0.0.0.0:"), "the pod's own interfaces: %s", cfg.HTTP.Listen)
	assert.True(t, strings.HasSuffix(cfg.HTTP.Listen, ":"+strconv.Itoa(c.Ports[0].ContainerPort)), "http.listen %s is the container port", cfg.HTTP.Listen)
}
