package main

import (
	"strings"

	"github.com/spf13/cobra"
)

// 'mcbn help' and 'mcbn completion': ours rather than cobra's defaults, so
// that they teach by example like every other command and answer a wrong
// argument with a one-line usage error (exit 2).

func newHelpCmd() *cobra.Command {
	c := leaf("help [COMMAND]...", "show the help of a command",
		`Prints the help of the command named, the same as 'mcbn COMMAND... --help': what
it does, its synopsis, examples and flags. Without a command: mcbn's own help.`,
		`  $ mcbn help psk split
  $ mcbn help proxy server`, cobra.ArbitraryArgs)
	c.ValidArgsFunction = func(c *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		target, rest, err := c.Root().Find(args)
		if err != nil || len(rest) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []cobra.Completion
		for _, s := range target.Commands() {
			if s.IsAvailableCommand() && strings.HasPrefix(s.Name(), toComplete) {
				out = append(out, cobra.CompletionWithDesc(s.Name(), s.Short))
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
	c.RunE = func(c *cobra.Command, args []string) error {
		target, rest, err := c.Root().Find(args)
		if err != nil || len(rest) > 0 {
			return unknownCommand(target, rest)
		}
		return target.Help()
	}
	return c
}

var completionShells = []string{"bash", "zsh", "fish", "powershell"}

func newCompletionCmd() *cobra.Command {
	c := leaf("completion bash|zsh|fish|powershell", "print the shell completion script for mcbn",
		`Prints a script that completes mcbn's commands, flags and arguments in the
shell named. The script calls mcbn itself to complete, so it follows the
mcbn found on PATH (see 'go install ./cmd/mcbn' in the README).

  bash   needs the bash-completion package. For the current shell:
           source <(mcbn completion bash)
         for every new shell (Linux):
           mcbn completion bash > /etc/bash_completion.d/mcbn
  zsh    with compinit enabled, write it as _mcbn into a directory of $fpath:
           mcbn completion zsh > "${fpath[1]}/_mcbn"
  fish   mcbn completion fish > ~/.config/fish/completions/mcbn.fish
  powershell
           mcbn completion powershell | Out-String | Invoke-Expression`,
		`  $ source <(mcbn completion bash)
  $ mcbn completion zsh > "${fpath[1]}/_mcbn"`,
		func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("want one shell: %s", strings.Join(completionShells, ", "))
			}
			for _, s := range completionShells {
				if args[0] == s {
					return nil
				}
			}
			return usagef("unknown shell %q: want one of %s", args[0], strings.Join(completionShells, ", "))
		})
	c.ValidArgs = completionShells
	c.RunE = func(c *cobra.Command, args []string) error {
		out, root := c.OutOrStdout(), c.Root()
		switch args[0] {
		case "bash":
			return root.GenBashCompletionV2(out, true)
		case "zsh":
			return root.GenZshCompletion(out)
		case "fish":
			return root.GenFishCompletion(out, true)
		default:
			return root.GenPowerShellCompletionWithDesc(out)
		}
	}
	return c
}
