package main

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// run is dispatch with buffers.
func run(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = dispatch(args, &out, &errb)
	return code, out.String(), errb.String()
}

// walkCommands calls f with the words that name every command of the tree
// (nil for the root), help and completion included.
func walkCommands(t *testing.T, f func(path []string, c *cobra.Command)) {
	t.Helper()
	var walk func(c *cobra.Command, path []string)
	walk = func(c *cobra.Command, path []string) {
		f(path, c)
		for _, s := range c.Commands() {
			if s.Hidden {
				continue
			}
			walk(s, append(append([]string(nil), path...), s.Name()))
		}
	}
	walk(newRoot(), nil)
}

// Every command, group or leaf, answers --help on stdout with exit 0 and
// teaches by example; 'mcbn help PATH' prints the same.
func TestEveryHelpHasAnExample(t *testing.T) {
	n := 0
	walkCommands(t, func(path []string, _ *cobra.Command) {
		n++
		args := append(append([]string(nil), path...), "--help")
		code, out, errs := run(args...)
		if code != 0 || errs != "" {
			t.Errorf("mcbn %s: exit %d, stderr %q", strings.Join(args, " "), code, errs)
		}
		if !strings.Contains(out, "Example") {
			t.Errorf("mcbn %s: no example in the help", strings.Join(args, " "))
		}
		code, viaHelp, errs := run(append([]string{"help"}, path...)...)
		if code != 0 || errs != "" || viaHelp != out {
			t.Errorf("mcbn help %s: exit %d, stderr %q, differs from --help: %v", strings.Join(path, " "), code, errs, viaHelp != out)
		}
	})
	if n < 30 {
		t.Fatalf("walked only %d commands", n)
	}
}

// The help shows every flag with two dashes, and every flag that takes a
// value with a placeholder that says what to give (FILE, T, DURATION), not
// a Go type name.
func TestHelpShowsTypedPlaceholders(t *testing.T) {
	generic := map[string]bool{"": true, "string": true, "int": true, "uint": true, "duration": true, "stringArray": true,
		"strings": true, "float": true, "VALUE": true, "flag": true}
	walkCommands(t, func(path []string, c *cobra.Command) {
		_, out, _ := run(append(append([]string(nil), path...), "--help")...)
		c.LocalFlags().VisitAll(func(f *pflag.Flag) {
			name, _ := pflag.UnquoteUsage(f)
			want := "--" + f.Name
			switch {
			case f.Name == "help":
				want = "-h, --help "
			case f.Name == "version":
				want = "--version "
			case f.Value.Type() == "bool":
				if name != "" {
					t.Errorf("mcbn %s --%s: a boolean with placeholder %q", strings.Join(path, " "), f.Name, name)
				}
				want += "[=true|false]"
			default:
				if generic[name] {
					t.Errorf("mcbn %s --%s: placeholder %q is not typed", strings.Join(path, " "), f.Name, name)
				}
				want += " " + name
			}
			if !strings.Contains(out, want) {
				t.Errorf("mcbn %s --help does not show %q", strings.Join(path, " "), want)
			}
		})
	})
	_, out, _ := run("psk", "split", "--help")
	for _, w := range []string{"--threshold T", "--group NAME", "--out DIR", "Usage:\n  mcbn psk split --group NAME"} {
		if !strings.Contains(out, w) {
			t.Errorf("psk split --help lacks %q:\n%s", w, out)
		}
	}
	_, out, _ = run("proxy", "server", "--help")
	for _, w := range []string{"--config FILE", "--drain-timeout DURATION", "--listen URL", "--dtls-connection-id[=true|false]"} {
		if !strings.Contains(out, w) {
			t.Errorf("proxy server --help lacks %q:\n%s", w, out)
		}
	}
}

func TestVersion(t *testing.T) {
	defer func(v string) { version = v }(version)
	version = "v9.8.7-test" // what -ldflags "-X main.version=..." stamps
	code1, out1, err1 := run("--version")
	code2, out2, err2 := run("version")
	if code1 != 0 || code2 != 0 || err1 != "" || err2 != "" {
		t.Fatalf("exit %d/%d, stderr %q %q", code1, code2, err1, err2)
	}
	if out1 != out2 {
		t.Fatalf("--version %q differs from version %q", out1, out2)
	}
	if !strings.HasPrefix(out1, "mcbn v9.8.7-test") || !strings.Contains(out1, runtime.Version()) || strings.Count(out1, "\n") != 1 {
		t.Fatalf("version line %q", out1)
	}
	if code, out, _ := run("-version"); code != 0 || out != out1 {
		t.Fatalf("-version: exit %d %q", code, out)
	}
}

func TestHelpCommand(t *testing.T) {
	_, want, _ := run("psk", "split", "--help")
	for _, args := range [][]string{{"help", "psk", "split"}, {"psk", "help", "split"}, {"psk", "split", "-h"}, {"psk", "split", "-help"}} {
		code, out, errs := run(args...)
		if code != 0 || errs != "" || out != want {
			t.Errorf("%v: exit %d, stderr %q, same help: %v", args, code, errs, out == want)
		}
	}
	code, out, errs := run("help")
	if code != 0 || !strings.Contains(out, "Commands:") || !strings.Contains(out, "completion") || errs != "" {
		t.Fatalf("help: exit %d %q %q", code, out, errs)
	}
	code, out, errs = run("help", "psk", "splt")
	if code != 2 || out != "" || !oneLine(errs) || !strings.Contains(errs, `unknown command "splt" (did you mean "split"?)`) {
		t.Fatalf("help psk splt: exit %d, stdout %q, stderr %q", code, out, errs)
	}
}

func TestCompletionScripts(t *testing.T) {
	for shell, want := range map[string]string{"bash": "__start_mcbn", "zsh": "#compdef mcbn", "fish": "complete -c mcbn", "powershell": "mcbn"} {
		code, out, errs := run("completion", shell)
		if code != 0 || errs != "" || !strings.Contains(out, want) || !strings.Contains(out, "__complete") {
			t.Errorf("completion %s: exit %d, stderr %q, %d bytes without %q", shell, code, errs, len(out), want)
		}
	}
	// The scripts call 'mcbn __complete ...': it must answer.
	code, out, _ := run("__complete", "psk", "sp")
	if code != 0 || !strings.Contains(out, "split") {
		t.Fatalf("__complete psk sp: exit %d %q", code, out)
	}
	code, out, _ = run("__complete", "psk", "split", "--thr")
	if code != 0 || !strings.Contains(out, "--threshold") {
		t.Fatalf("__complete psk split --thr: exit %d %q", code, out)
	}
	code, out, _ = run("__complete", "completion", "")
	if code != 0 || !strings.Contains(out, "bash") || !strings.Contains(out, "fish") {
		t.Fatalf("__complete completion: exit %d %q", code, out)
	}
	if code, out, errs := run("completion", "tcsh"); code != 2 || out != "" || !oneLine(errs) {
		t.Fatalf("completion tcsh: exit %d %q %q", code, out, errs)
	}
}

func oneLine(s string) bool { return strings.HasSuffix(s, "\n") && strings.Count(s, "\n") == 1 }

// A command called wrongly exits 2 with one line on stderr naming what is
// wrong and pointing at --help, and nothing on stdout: the output of
// $(mcbn psk combine ...) goes to openssl.
func TestUsageErrorsAreOneLine(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"psk", "combine", "--bogus", "a.json"}, "unknown flag: --bogus"},
		{[]string{"psk", "combine", "-bogus", "a.json"}, "-bogus"},
		{[]string{"psk", "combine", "a.json", "--group"}, "flag needs an argument: --group"},
		{[]string{"psk", "combine", "a.json"}, "--group and at least one share or key file are required"},
		{[]string{"psk", "split", "--group", "g", "--threshold", "two", "--participants", "a,b"}, `invalid argument "two" for "--threshold"`},
		{[]string{"psk", "split", "--out", dir}, "--group, --threshold and --participants are required"},
		{[]string{"psk", "split", "extra"}, `unexpected argument "extra"`},
		{[]string{"psk", "inspect"}, "give exactly one file"},
		{[]string{"psk", "bogus"}, `unknown command "bogus"`},
		{[]string{"bogus"}, `unknown command "bogus"`},
		{[]string{"version", "now"}, `unexpected argument "now"`},
		{[]string{"--version=maybe"}, "invalid argument"},
		{[]string{"proxy", "server", "--bogus"}, "unknown flag: --bogus"},
		{[]string{"proxy", "server", "--check=perhaps"}, "invalid argument"},
		{[]string{"shareholder", "serve", "-c", "x"}, "unknown shorthand flag: 'c'"},
		{[]string{"demo", "--keep", "now"}, `unexpected argument "now"`},
	} {
		code, out, errs := run(tc.args...)
		if code != 2 || out != "" || !oneLine(errs) || !strings.Contains(errs, tc.want) || !strings.Contains(errs, "--help") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q (want one line with %q and --help)", tc.args, code, out, errs, tc.want)
		}
	}
}

// A group without its command prints its help on stderr (exit 2), never on
// stdout.
func TestGroupWithoutCommand(t *testing.T) {
	for _, args := range [][]string{nil, {"psk"}, {"psk", "dkg"}, {"shareholder", "consent"}} {
		code, out, errs := run(args...)
		if code != 2 || out != "" || !strings.Contains(errs, "Commands:") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out, errs)
		}
	}
}

var legacyKeys = []string{
	"2c6f63f8c0f53a565db041b91c0a95add8913fc102670589db3982228dbfed90",
	"b15244faf36e5e4b178d3891701d245f2e45e881d913b6c35c0ea0ac14224cc2",
	"3e2078d5cd04beabfa4a7a1486bc626d679184df2e0a2b9942d913d4b835516c",
}

// Booleans are --x and --x=false (a separate "false" would be an argument).
func TestBooleanFlagsTakeEqualsFalse(t *testing.T) {
	legacy := func(flags ...string) string {
		t.Helper()
		code, out, errs := run(append(append([]string{"psk", "legacy-concat"}, flags...), legacyKeys...)...)
		if code != 0 {
			t.Fatalf("%v: exit %d %q", flags, code, errs)
		}
		return strings.TrimSpace(out)
	}
	digest := "6d1bbd1e6235c9d9ec8cdbdf9b32d4d08304a7f305f7c6c67775130d914f4dc4"
	if got := legacy(); got != digest {
		t.Fatalf("digest %s", got)
	}
	if got := legacy("--ascii=false"); got != digest {
		t.Fatalf("--ascii=false: %s", got)
	}
	ascii := legacy("--ascii")
	if ascii == digest || legacy("--ascii=true") != ascii || legacy("-ascii") != ascii {
		t.Fatalf("--ascii: %s", ascii)
	}
	// The proxy's booleans come from package proxy through the adapter:
	// the value given reaches the setting (a bad one is refused by it).
	key := writeKey(t, "psk.hex")
	base := []string{"proxy", "server", "--check", "--listen", "dtls://127.0.0.1:0", "--connect", "udp://127.0.0.1:9", "--psk-file", key}
	if code, out, errs := run(append(base, "--dtls-connection-id=false")...); code != 0 || !strings.Contains(out, "config ok") {
		t.Fatalf("--dtls-connection-id=false: exit %d %q %q", code, out, errs)
	}
	if code, _, errs := run(append(base, "--dtls-connection-id=sometimes")...); code != 1 || !strings.Contains(errs, "dtls.connection_id") {
		t.Fatalf("--dtls-connection-id=sometimes: exit %d %q", code, errs)
	}
	if code, _, errs := run(append(base, "--dtls-connection-id", "false")...); code != 2 || !strings.Contains(errs, `unexpected argument "false"`) {
		t.Fatalf("--dtls-connection-id false: exit %d %q", code, errs)
	}
}

// The standard flag package took -name as well as --name; so does mcbn.
func TestSingleDashLongFlags(t *testing.T) {
	dir := t.TempDir()
	code, out, errs := run("psk", "split", "-group", "g", "-threshold=2", "-participants", "a,b", "-out", dir)
	if code != 0 || !strings.Contains(out, "2-of-2") {
		t.Fatalf("split: exit %d %q %q", code, out, errs)
	}
	if _, err := os.Stat(filepath.Join(dir, "b.share.json")); err != nil {
		t.Fatal(err)
	}
	root := newRoot()
	for _, tc := range []struct{ in, want []string }{
		{[]string{"psk", "split", "-group", "-out", "-out", "d"}, []string{"psk", "split", "--group", "-out", "--out", "d"}},
		{[]string{"psk", "legacy-concat", "-ascii", "-x", "--", "-ascii"}, []string{"psk", "legacy-concat", "--ascii", "-x", "--", "-ascii"}},
		{[]string{"psk", "split", "--group", "--", "-out", "d"}, []string{"psk", "split", "--group", "--", "--out", "d"}}, // pflag: "--" is --group's value
		{[]string{"psk", "combine", "-create", "-group=g", "-h"}, []string{"psk", "combine", "--create", "--group=g", "-h"}},
		{[]string{"proxy", "client", "-listen", "tcp://x:1", "-allow-public-listen", "-psk", "-psk"}, []string{"proxy", "client", "--listen", "tcp://x:1", "--allow-public-listen", "--psk", "-psk"}},
		{[]string{"__complete", "psk", "split", "-gr"}, []string{"__complete", "psk", "split", "-gr"}},
	} {
		if got := singleDashLongFlags(root, tc.in); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q: got %q, want %q", tc.in, got, tc.want)
		}
	}
}

// singleDashLongFlags only ever adds one dash to a whole argument that had
// one, and applying it twice changes nothing more. ("--" ending the flags
// is in TestSingleDashLongFlags: here it may be a flag's value.)
func FuzzSingleDashLongFlags(f *testing.F) {
	for _, s := range []string{
		"psk split -group g -threshold=2 -participants a,b",
		"psk combine -group -out -create -- -group",
		"proxy server -listen tls://:1 -check -dtls-connection-id=false -h",
		"tls client -tls1_3 -psk 00 -- x",
		"__complete psk split -gr",
		"- -- --- -=x -group= --group",
		"help psk split -help",
		"psk split --group -- -out d",
		"",
	} {
		f.Add(s)
	}
	root := newRoot()
	f.Fuzz(func(t *testing.T, s string) {
		in := strings.Split(s, " ")
		out := singleDashLongFlags(root, in)
		if len(out) != len(in) {
			t.Fatalf("%q -> %q: length changed", in, out)
		}
		for i := range in {
			if out[i] != in[i] && (out[i] != "-"+in[i] || strings.HasPrefix(in[i], "--") || !strings.HasPrefix(in[i], "-")) {
				t.Fatalf("%q -> %q: %q became %q", in, out, in[i], out[i])
			}
		}
		if again := singleDashLongFlags(root, out); !reflect.DeepEqual(again, out) {
			t.Fatalf("%q -> %q -> %q: not idempotent", in, out, again)
		}
	})
}
