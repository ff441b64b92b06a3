// Command mcbn is the single binary of Multiparty Consent Based Networking.
//
// It only wires subcommands to the packages that hold the logic (psk, tlspsk,
// proxy, shareholder, attest). Each subcommand group lives in its own file and
// registers itself with register in an init function.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// command is one node of the command tree: either a group with children or a
// leaf with run.
type command struct {
	name    string // one word, e.g. "split"
	summary string // one line for the parent's listing
	usage   string // full help text shown by --help (for leaves: synopsis, description, example)
	run     func(args []string, stdout, stderr io.Writer) error
	sub     []*command
}

var root = &command{
	name:    "mcbn",
	summary: "Multiparty Consent Based Networking",
	usage: `mcbn tunnels TCP over TLS-PSK and UDP over DTLS-PSK with a pre-shared key that
exists only while a threshold of independent participants consent.

Examples:

  $ mcbn demo                       # the whole consent network on this machine, step by step
  $ mcbn psk split --group demo --threshold 2 --participants alice,bob,carol --out keys
  $ mcbn proxy server --listen tls://:8443 --connect tcp://127.0.0.1:8080 --psk-file psk.txt

Run 'mcbn COMMAND --help' for the details of a command.`,
}

// register adds c under the group named by path ("" for the root, "psk",
// "psk dkg", ...). Groups on the path are created as needed, so files may
// register in any order; a group (a command without run) registered later
// fills in the summary and usage of the one created implicitly.
func register(path string, c *command) {
	parent := root
	for _, p := range strings.Fields(path) {
		next := parent.child(p)
		if next == nil {
			next = &command{name: p}
			parent.sub = append(parent.sub, next)
		}
		parent = next
	}
	if existing := parent.child(c.name); existing != nil && existing.run == nil && c.run == nil {
		existing.summary, existing.usage = c.summary, c.usage
		existing.sub = append(existing.sub, c.sub...)
		return
	}
	parent.sub = append(parent.sub, c)
}

func (c *command) child(name string) *command {
	for _, s := range c.sub {
		if s.name == name {
			return s
		}
	}
	return nil
}

// errUsage marks an error caused by how the command was called; main prints it
// with a hint to --help and exits 2.
var errUsage = errors.New("usage")

type usageError struct{ msg string }

func (e usageError) Error() string   { return e.msg }
func (e usageError) Is(t error) bool { return t == errUsage }

// usagef returns an error that main reports as a usage error (exit code 2).
func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

func (c *command) printHelp(w io.Writer, path string) {
	fmt.Fprintf(w, "%s\n", strings.TrimSpace(c.usage))
	if len(c.sub) > 0 {
		subs := append([]*command(nil), c.sub...)
		sort.Slice(subs, func(i, j int) bool { return subs[i].name < subs[j].name })
		fmt.Fprintf(w, "\nUsage: %s COMMAND [flags]\n\nCommands:\n", path)
		for _, s := range subs {
			fmt.Fprintf(w, "  %-14s %s\n", s.name, s.summary)
		}
	}
}

// dispatch walks args down the tree and runs the leaf it names.
func dispatch(args []string, stdout, stderr io.Writer) int {
	c, path := root, "mcbn"
	for len(c.sub) > 0 {
		if len(args) == 0 {
			c.printHelp(stderr, path)
			return 2
		}
		a := args[0]
		if a == "-h" || a == "--help" || a == "-help" || a == "help" {
			c.printHelp(stdout, path)
			return 0
		}
		next := c.child(a)
		if next == nil {
			fmt.Fprintf(stderr, "%s: unknown command %q (run '%s --help')\n", path, a, path)
			return 2
		}
		c, path, args = next, path+" "+a, args[1:]
	}
	err := c.run(args, stdout, stderr)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "%s: %v (run '%s --help')\n", path, err, path)
		return 2
	default:
		fmt.Fprintf(stderr, "%s: %v\n", path, err)
		return 1
	}
}

// newFlags returns a FlagSet for a leaf command whose -h/--help prints the
// command's full usage followed by its flags.
func newFlags(c *command, path string, stdout io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(path, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		fs.SetOutput(stdout)
		fmt.Fprintf(stdout, "%s\n", strings.TrimSpace(c.usage))
		n := 0
		fs.VisitAll(func(*flag.Flag) { n++ })
		if n > 0 {
			fmt.Fprintf(stdout, "\nFlags:\n")
			fs.PrintDefaults()
		}
		fs.SetOutput(io.Discard)
	}
	return fs
}

// parseFlags parses args with fs and turns flag errors into usage errors.
// Flags may come before or after positional arguments.
// The flag package calls Usage on every parse error too; the help goes to
// stdout only when asked for, so that a bad flag in `$(mcbn psk combine …)`
// leaves stdout empty and the error is one line on stderr.
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	usage := fs.Usage
	fs.Usage = func() {}
	defer func() { fs.Usage = usage }()
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				usage()
				return nil, flag.ErrHelp
			}
			return nil, usagef("%v", err)
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func main() {
	os.Exit(dispatch(os.Args[1:], os.Stdout, os.Stderr))
}
