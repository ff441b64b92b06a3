package examples_test

import (
	"strings"
	"testing"

	"github.com/mcbn/mcbn/proxy"
	"go.yaml.in/yaml/v3"

	"github.com/mcbn/mcbn/kms"
)

// The mixed-group example parses as a proxy config, and its KMS entry's
// options decode strictly into kms.Options: a misspelt key in the example
// would fail here, not on the VM.
func TestKMSMixedGroupExample(t *testing.T) {
	data := readExample(t, "kms", "server.yaml")
	cfg, err := proxy.ParseConfig([]byte(data))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Routes) != 1 || cfg.Routes[0].PSK.Source != "shares" {
		t.Fatalf("routes %+v", cfg.Routes)
	}
	var shares struct {
		Shareholders []struct {
			Name    string    `yaml:"name"`
			Kind    string    `yaml:"kind"`
			Options yaml.Node `yaml:"options"`
		} `yaml:"shareholders"`
	}
	if err := cfg.Routes[0].PSK.Options.Decode(&shares); err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, sh := range shares.Shareholders {
		k := sh.Kind
		if k == "" {
			k = "daemon"
		}
		kinds[k]++
		if k != kms.KindKMS {
			continue
		}
		var o kms.Options
		dec := yaml.NewDecoder(strings.NewReader(nodeText(t, &sh.Options)))
		dec.KnownFields(true)
		if err := dec.Decode(&o); err != nil {
			t.Fatalf("%s: options: %v", sh.Name, err)
		}
		if o.SealedShare == "" || o.KMSKey == "" || !strings.HasPrefix(o.WIFAudience, "//iam.googleapis.com/projects/") {
			t.Fatalf("%s: options %+v", sh.Name, o)
		}
	}
	if kinds["daemon"] != 2 || kinds[kms.KindKMS] != 1 {
		t.Fatalf("participants by kind %v, want 2 daemons and 1 kms", kinds)
	}
	mustContain(t, "kms/README.md", readExample(t, "kms", "README.md"), "mcbn participant gcp-setup", "mcbn psk seal", "demo --kms")
}

func nodeText(t *testing.T, n *yaml.Node) string {
	t.Helper()
	b, err := yaml.Marshal(n)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
