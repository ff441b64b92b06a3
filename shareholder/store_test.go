package shareholder

import (
	"bytes"
	"context"
	"hash/crc32"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"cloud.google.com/go/secretmanager/apiv1/secretmanagerpb"
	"github.com/mcbn/mcbn/psk"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// fakeSecretManager implements AccessSecretVersion over real gRPC.
type fakeSecretManager struct {
	secretmanagerpb.UnimplementedSecretManagerServiceServer
	secrets map[string][]byte
	badCRC  bool
}

func (f *fakeSecretManager) AccessSecretVersion(_ context.Context, req *secretmanagerpb.AccessSecretVersionRequest) (*secretmanagerpb.AccessSecretVersionResponse, error) {
	data, ok := f.secrets[req.GetName()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "Secret Version [%s] not found.", req.GetName())
	}
	crc := int64(crc32.Checksum(data, crc32.MakeTable(crc32.Castagnoli)))
	if f.badCRC {
		crc++
	}
	return &secretmanagerpb.AccessSecretVersionResponse{
		Name:    req.GetName(),
		Payload: &secretmanagerpb.SecretPayload{Data: bytes.Clone(data), DataCrc32C: &crc},
	}, nil
}

func startFakeSecretManager(t *testing.T, fake *fakeSecretManager) []option.ClientOption {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	secretmanagerpb.RegisterSecretManagerServiceServer(srv, fake)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return []option.ClientOption{
		option.WithEndpoint(ln.Addr().String()),
		option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
	}
}

// The Secret Manager store goes through the real client library.
func TestSecretManagerStore(t *testing.T) {
	f := newFixture(t)
	file, err := psk.MarshalShare(f.shares["bob"])
	if err != nil {
		t.Fatal(err)
	}
	name := "projects/mcbn-test/secrets/bob-share/versions/3"
	fake := &fakeSecretManager{secrets: map[string][]byte{name: file}}
	opts := startFakeSecretManager(t, fake)
	ctx := context.Background()

	st, err := OpenStore(ctx, "gcpsm://"+name, "", opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	sh, err := st.LoadShare(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := psk.VerifyShare(f.group, sh); err != nil || sh.Participant != "bob" {
		t.Fatalf("share from Secret Manager: %v", err)
	}

	missing, _ := OpenStore(ctx, "gcpsm://projects/mcbn-test/secrets/nope/versions/latest", "", opts...)
	defer missing.Close()
	if _, err := missing.LoadShare(ctx); err == nil || !strings.Contains(err.Error(), "NotFound") {
		t.Fatalf("missing secret: %v", err)
	}
	fake.badCRC = true
	if _, err := st.LoadShare(ctx); err == nil || !strings.Contains(err.Error(), "checksum") {
		t.Fatalf("bad checksum accepted: %v", err)
	}
	fake.badCRC = false
	fake.secrets[name] = []byte(`{"not":"a share"}`)
	if _, err := st.LoadShare(ctx); err == nil {
		t.Fatal("a payload that is not a share was accepted")
	}

	// A daemon serves the share from Secret Manager end to end.
	fake.secrets[name] = file
	path := filepath.Join(f.dir, "bob.yaml")
	text := strings.Replace(f.configYAML("bob", f.devPolicy, ConsentGranted),
		"share_store: file://"+filepath.Join(f.dir, "bob.share.json"), "share_store: gcpsm://"+name, 1)
	os.WriteFile(path, []byte(text), 0o600)
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := NewServer(ctx, cfg, ServerOptions{Logger: quietLogger(), StoreOptions: opts})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	c := dialServer(t, srv)
	tok, _ := f.att.Mint("mcbn-test-bob", []string{c.nonce})
	if code, ref, rr := c.post(t, requestBody(tok)); rr == nil {
		t.Fatalf("HTTP %d %s", code, ref.Reason)
	}
}

// A share file readable by others is refused (psk.LoadShare), and the
// daemon does not start with it.
func TestFileStoreRefusesLooseMode(t *testing.T) {
	f := newFixture(t)
	p := filepath.Join(f.dir, "alice.share.json")
	os.Chmod(p, 0o640)
	st, err := OpenStore(context.Background(), "file://"+p, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.LoadShare(context.Background()); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("group-readable share loaded: %v", err)
	}
	cfg, err := ParseConfig([]byte(f.configYAML("alice", f.devPolicy, ConsentGranted)), f.dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewServer(context.Background(), cfg, ServerOptions{Logger: quietLogger()}); err == nil || !strings.Contains(err.Error(), "share_store") {
		t.Fatalf("daemon started with a loose share file: %v", err)
	}
}

func TestStoreURLs(t *testing.T) {
	good := map[string]string{
		"file:///etc/mcbn/a.json":                          "/etc/mcbn/a.json",
		"file://a.json":                                    "/base/a.json",
		"gcpsm://projects/p-1/secrets/s_1/versions/7":      "",
		"gcpsm://projects/p-1/secrets/s_1/versions/latest": "",
	}
	for in, path := range good {
		u, err := parseStoreURL(in, "/base")
		if err != nil {
			t.Errorf("%s: %v", in, err)
		} else if path != "" && u.path != path {
			t.Errorf("%s: path %s, want %s", in, u.path, path)
		}
	}
	for _, in := range []string{"", "/etc/a.json", "file://", "gcpsm://projects/p/secrets/s", "gcpsm://projects/p/secrets/s/versions/0", "s3://bucket/x", "gcpsm://projects/p/secrets/s/versions/1/extra"} {
		if _, err := parseStoreURL(in, "/base"); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}
