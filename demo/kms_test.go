package demo

import (
	"context"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcbn/mcbn/kms"
	"github.com/mcbn/mcbn/psk"
)

// `mcbn demo --kms`: a group of two daemons (alice, bob) and one Cloud KMS
// participant (carol, against the STS/KMS fakes) opens and closes the
// network. Run checks each step's traffic outcome and that the proxies
// name the reason (bob refused, carol's KMS share ok, carol's key version
// disabled); the narration must show the steps in order and hold no share,
// PSK or token, and carol's share must exist only sealed.
func TestDemoRunsWithKMS(t *testing.T) {
	dir := t.TempDir()
	var out syncBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	start := time.Now()
	if err := Run(ctx, Options{Out: &out, Dir: dir, KMS: true}); err != nil {
		t.Fatalf("demo --kms: %v\n%s", err, out.String())
	}
	text := out.String()
	t.Logf("demo --kms took %s:\n%s", time.Since(start), text)
	pos := 0
	for _, want := range []string{
		"Key setup", "dev attester", "carol is a Cloud KMS participant",
		"carol sealed her share with key version " + kmsKeyName + "/cryptoKeyVersions/",
		"two shareholder daemons (alice, bob)", "server proxy and the client proxy",
		"TCP: GET /consent", "UDP: 3 datagrams",
		"bob revokes", "alice ok", "bob refused", "carol ok", "TCP: GET /consent", "UDP: 3 datagrams",
		"carol disables her key version", "carol refused: key_disabled",
		"TCP: a new tunnel is refused", "UDP: a new session gets no echo",
		"carol enables her key version", "ready again", "TCP: GET /consent", "UDP: 3 datagrams",
		"openssl s_client", "(run 'mcbn demo --kms --keep'", "Done in",
	} {
		i := strings.Index(text[pos:], want)
		if i < 0 {
			t.Fatalf("narration lacks %q after position %d", want, pos)
		}
		pos += i + len(want)
	}
	if strings.Contains(text, "three shareholders") {
		t.Error("--kms started a daemon for carol")
	}

	// carol's share is only sealed: no plain share file, a sealed one
	// naming her key.
	if _, err := os.Stat(filepath.Join(dir, "carol.share.json")); !os.IsNotExist(err) {
		t.Errorf("carol's plain share file is still there (%v)", err)
	}
	sealed, err := kms.LoadSealed(filepath.Join(dir, "carol.share.kms.json"))
	if err != nil {
		t.Fatal(err)
	}
	if sealed.Participant != "carol" || sealed.KMSKey != kmsKeyName {
		t.Fatalf("sealed share is %s's under %s", sealed.Participant, sealed.KMSKey)
	}

	// No secret in the narration: the daemons' shares, the PSK, carol's
	// ciphertext, an access token of the fake or a JWT.
	g, err := psk.LoadGroup(filepath.Join(dir, "group.json"))
	if err != nil {
		t.Fatal(err)
	}
	var shares []*psk.Share
	for _, p := range []string{"alice", "bob"} {
		s, err := psk.LoadShare(filepath.Join(dir, p+".share.json"))
		if err != nil {
			t.Fatal(err)
		}
		shares = append(shares, s)
		if strings.Contains(text, hex.EncodeToString(s.Value)) {
			t.Errorf("the narration holds %s's share", p)
		}
	}
	if strings.Contains(strings.ToLower(text), hex.EncodeToString(derive(t, g, shares))) {
		t.Error("the narration holds the PSK")
	}
	if strings.Contains(text, sealed.Ciphertext) {
		t.Error("the narration holds carol's sealed ciphertext")
	}
	for _, tok := range []string{"ya29.", "eyJ"} {
		if strings.Contains(text, tok) {
			t.Errorf("the narration holds something token-shaped (%q)", tok)
		}
	}
}
