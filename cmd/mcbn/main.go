// Command mcbn is the single binary of Multiparty Consent Based Networking.
//
// It only wires subcommands to the packages that hold the logic (psk, tlspsk,
// proxy, shareholder, attest). The command tree is built with cobra and
// pflag (see docs/architecture.md for why); each subcommand group lives in
// its own file and returns its commands from a constructor that newRoot
// calls.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
)

const rootLong = `mcbn tunnels TCP over TLS-PSK and UDP over DTLS-PSK with a pre-shared key that
exists only while a threshold of independent participants consent.`

const rootExample = `  $ mcbn demo                       # the whole consent network on this machine, step by step
  $ mcbn psk split --group demo --threshold 2 --participants alice,bob,carol --out keys
  $ mcbn proxy server --listen tls://:8443 --connect tcp://127.0.0.1:8080 --psk-file psk.txt`

// newRoot builds the whole command tree. It is built afresh for every run:
// cobra keeps parsed flag values in the tree, and tests run several
// commands at once in one process.
func newRoot() *cobra.Command {
	root := group("mcbn", "Multiparty Consent Based Networking", rootLong, rootExample,
		newDemoCmd(),
		newDevCmd(),
		newParticipantCmd(),
		newProxyCmd(),
		newPskCmd(),
		newShareholderCmd(),
		newTLSCmd(),
		newVersionCmd(),
		newCompletionCmd(),
	)
	root.Version = versionLine()
	root.SetVersionTemplate("{{.Version}}\n")
	// Defined here so that cobra adds no -v shorthand for it.
	root.Flags().VarPF(plainBool{new(bool)}, "version", "", "print the version of mcbn and of Go, like 'mcbn version'").NoOptDefVal = "true"
	// Errors are printed by execute as one line; help goes to stdout only
	// when asked for, so that a bad flag in `$(mcbn psk combine …)` leaves
	// stdout empty.
	root.SilenceErrors = true
	root.SilenceUsage = true
	root.CompletionOptions.DisableDefaultCmd = true // ours: newCompletionCmd
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err.Error()} })
	root.SetUsageTemplate(usageTemplate)
	root.SetHelpCommand(newHelpCmd())
	root.InitDefaultHelpCmd()
	finish(root)
	return root
}

// usageTemplate follows cobra's default layout; the synopsis of a leaf
// lists its flags itself. pflag shows a boolean as --x[=true|false].
const usageTemplate = `Usage:{{if .HasAvailableSubCommands}}
  {{.CommandPath}} COMMAND [flags]{{else}}
  {{.UseLine}}{{end}}{{if .HasExample}}

Examples:
{{.Example}}{{end}}{{if .HasAvailableSubCommands}}

Commands:{{range .Commands}}{{if (or .IsAvailableCommand (eq .Name "help"))}}
  {{rpad .Name .NamePadding }} {{.Short}}{{end}}{{end}}{{end}}{{if .HasAvailableLocalFlags}}

Flags:
{{.LocalFlags.FlagUsages | trimTrailingWhitespaces}}{{end}}{{if .HasAvailableSubCommands}}

Run '{{.CommandPath}} COMMAND --help' or 'mcbn help {{if .HasParent}}{{.CommandPath | trimPrefixMcbn}} {{end}}COMMAND' for the details of a command.{{end}}
`

func init() {
	cobra.AddTemplateFunc("trimPrefixMcbn", func(s string) string { return strings.TrimPrefix(s, "mcbn ") })
}

// group returns a command that only holds subcommands. Run without one, it
// prints its help on stderr and exits 2, as before cobra.
func group(name, short, long, example string, subs ...*cobra.Command) *cobra.Command {
	c := &cobra.Command{
		Use:     name,
		Short:   short,
		Long:    long,
		Example: example,
		Args:    cobra.ArbitraryArgs, // checked by runGroup: cobra's own check prints several lines
		RunE:    runGroup,
	}
	c.AddCommand(subs...)
	return c
}

func runGroup(c *cobra.Command, args []string) error {
	if len(args) == 0 {
		c.SetOut(c.ErrOrStderr())
		c.Help()
		return errHelpShown
	}
	if args[0] == "help" { // 'mcbn psk help [COMMAND]', which worked before cobra too
		target, rest, err := c.Find(args[1:])
		if err != nil || len(rest) > 0 {
			return unknownCommand(target, rest)
		}
		return target.Help()
	}
	return unknownCommand(c, args)
}

// unknownCommand is the one-line error for a word that names no
// subcommand of c, with cobra's suggestion when it has one.
func unknownCommand(c *cobra.Command, args []string) error {
	if len(args) == 0 {
		return usagef("unknown command")
	}
	msg := fmt.Sprintf("unknown command %q", args[0])
	if s := c.SuggestionsFor(args[0]); len(s) > 0 {
		msg += fmt.Sprintf(" (did you mean %q?)", s[0])
	}
	return usageError{msg}
}

// leaf returns a command that runs. Its synopsis (use) names its flags, so
// cobra adds no "[flags]".
func leaf(use, short, long, example string, args cobra.PositionalArgs) *cobra.Command {
	return &cobra.Command{Use: use, Short: short, Long: long, Example: example, Args: args}
}

// noArgs refuses any positional argument with a one-line usage error.
func noArgs(_ *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("unexpected argument %q", args[0])
	}
	return nil
}

// exactArgs wants n positional arguments; msg says so otherwise.
func exactArgs(n int, msg string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("%s", msg)
		}
		return nil
	}
}

// finish sets what every command of the tree shares: synopses without an
// added "[flags]", suggestions for misspelt subcommands, and the run error
// classification execute relies on.
func finish(c *cobra.Command) {
	c.DisableFlagsInUseLine = true
	// cobra's own help flag would show as --help[=true|false] (pflag's
	// form for booleans); it is the one boolean nobody sets to false.
	c.Flags().VarPF(plainBool{new(bool)}, "help", "h", "help for "+c.Name()).NoOptDefVal = "true"
	c.SuggestionsMinimumDistance = 2
	if run := c.RunE; run != nil {
		c.RunE = func(cmd *cobra.Command, args []string) error {
			err := run(cmd, args)
			if err == nil || errors.Is(err, errUsage) || errors.Is(err, errHelpShown) {
				return err
			}
			return runError{err}
		}
	}
	for _, s := range c.Commands() {
		finish(s)
	}
}

// plainBool is a boolean flag that pflag shows without [=true|false], for
// --help and --version.
type plainBool struct{ v *bool }

func (h plainBool) String() string { return strconv.FormatBool(*h.v) }
func (h plainBool) Type() string   { return "bool" } // what cobra's GetBool wants
func (h plainBool) Set(s string) error {
	b, err := strconv.ParseBool(s)
	*h.v = b
	return err
}

// errUsage marks an error caused by how the command was called; execute
// prints it with a hint to --help and exits 2.
var errUsage = errors.New("usage")

type usageError struct{ msg string }

func (e usageError) Error() string   { return e.msg }
func (e usageError) Is(t error) bool { return t == errUsage }

// usagef returns an error that execute reports as a usage error (exit code 2).
func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

// errHelpShown: the help was printed on stderr; exit 2 with no more words.
var errHelpShown = errors.New("help shown")

// runError is an error of a command that ran (exit code 1). Anything else
// execute sees came from cobra or pflag before the command ran: how it was
// called (exit code 2).
type runError struct{ err error }

func (e runError) Error() string { return e.err.Error() }
func (e runError) Unwrap() error { return e.err }

// dispatch runs the command args name and returns the exit code: 0 ok, 1 the
// command failed, 2 it was called wrongly (a one-line error on stderr with a
// hint to --help).
func dispatch(args []string, stdout, stderr io.Writer) int {
	return execute(newRoot(), args, stdout, stderr)
}

func execute(root *cobra.Command, args []string, stdout, stderr io.Writer) int {
	if args == nil {
		args = []string{} // cobra reads os.Args when given nil
	}
	root.SetArgs(singleDashLongFlags(root, args))
	root.SetOut(stdout)
	root.SetErr(stderr)
	c, err := root.ExecuteC()
	if err == nil {
		return 0
	}
	if errors.Is(err, errHelpShown) {
		return 2
	}
	path := root.Name()
	if c != nil {
		path = c.CommandPath()
	}
	var re runError
	if errors.As(err, &re) {
		fmt.Fprintf(stderr, "%s: %v\n", path, re.err)
		return 1
	}
	msg := strings.Join(strings.Fields(err.Error()), " ") // one line, whatever cobra said
	fmt.Fprintf(stderr, "%s: %s (run '%s --help')\n", path, msg, path)
	return 2
}

// singleDashLongFlags rewrites -name and -name=value to --name... when name
// is a long flag of the command args select. mcbn parsed its flags with the
// standard flag package before cobra, which takes one dash as well as two,
// and the scripts written then must keep working; pflag would read -name
// as the shorthands -n -a -m -e. mcbn defines no shorthand but -h, so
// nothing else is lost. Values of flags are skipped, "--" ends the flags,
// and shell completion requests are left alone.
func singleDashLongFlags(root *cobra.Command, args []string) []string {
	if len(args) > 0 && strings.HasPrefix(args[0], cobra.ShellCompRequestCmd) {
		return args
	}
	c, _, err := root.Find(args)
	if err != nil || c == nil {
		return args
	}
	c.InitDefaultHelpFlag()
	flags := c.Flags()
	out := make([]string, 0, len(args))
	value := false // the previous argument was a flag that takes this one as its value
	for i, a := range args {
		if value {
			value = false
			out = append(out, a)
			continue
		}
		if a == "--" {
			out = append(out, args[i:]...)
			break
		}
		if len(a) > 2 && a[0] == '-' {
			long := strings.HasPrefix(a, "--")
			name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
			if f := flags.Lookup(name); f != nil && len(name) > 1 {
				if !long {
					a = "-" + a
				}
				value = !hasValue && f.NoOptDefVal == ""
			}
		}
		out = append(out, a)
	}
	return out
}

func main() {
	os.Exit(dispatch(os.Args[1:], os.Stdout, os.Stderr))
}
