package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/mcbn/mcbn/shareholder"
)

const shAuditLong = `Checks every line of an audit log and the hash chain between them. An edited,
deleted, inserted or reordered line is reported with its file and line number
(exit 1). On success it prints the record count and the head hash.

A rotated log is a series: FILE.1, FILE.2, ... (oldest first), then FILE. Each
file after the first begins with a rotate record carrying the last hash of the
one before, so given FILE, verify checks the whole series and reports a
deleted, edited, replaced or reordered file. Old files may be pruned from the
start: verify then says at which seq the chain it checked begins. --single
checks FILE alone (a rotated one too) and says where its chain starts.

Lines cut from the end leave a valid chain; only a head recorded earlier shows
them. --head takes such a head (the audit_head the daemon logs at start, or
one an earlier verify printed, kept somewhere the log's writer cannot reach)
and fails unless some record of the log has it.

A last line without its newline is a write cut short by a crash; it is
reported here, and the daemon cuts it off (with a warning) at its next start.`

const shAuditExample = `  $ mcbn shareholder audit verify alice-audit.jsonl
  ok: 42 lines (40 releases, 2 refusals), head 9f86d081...
  $ mcbn shareholder audit verify --head 9f86d081... alice-audit.jsonl
  $ mcbn shareholder audit verify --single alice-audit.jsonl.3`

func newShareholderAuditVerifyCmd() *cobra.Command {
	c := leaf("verify [--head HASH] [--single] FILE", "check an audit log's hash chain", shAuditLong, shAuditExample,
		exactArgs(1, "want exactly one audit log FILE"))
	head := c.Flags().String("head", "", "a head `HASH` recorded earlier that the log must still contain")
	single := c.Flags().Bool("single", false, "check FILE alone, not the rotated files FILE.N before it")
	c.RunE = func(c *cobra.Command, pos []string) error {
		return runShareholderAuditVerify(pos[0], *head, *single, c.OutOrStdout())
	}
	return c
}

func runShareholderAuditVerify(file, head string, single bool, stdout io.Writer) error {
	var sum shareholder.AuditSummary
	if single {
		f, err := os.Open(file)
		if err != nil {
			return err
		}
		defer f.Close()
		sum, err = shareholder.VerifyAuditFile(f, head)
		if err != nil {
			return auditVerifyError(file, err)
		}
	} else {
		files, err := shareholder.AuditSeries(file)
		if err != nil {
			return err
		}
		if sum, err = shareholder.VerifyAuditFiles(files, head); err != nil {
			return auditVerifyError(file, err)
		}
	}
	if head != "" && sum.SeenAt < 0 {
		return fmt.Errorf("%s: no line has head %s: lines were cut from the end or the log was replaced (the chain of its %d lines is intact)", file, head, sum.Lines)
	}
	if len(sum.Files) > 1 {
		for _, f := range sum.Files {
			if f.Lines == 0 {
				fmt.Fprintf(stdout, "%s: empty\n", f.Name)
				continue
			}
			fmt.Fprintf(stdout, "%s: seq %d-%d (%d lines)\n", f.Name, f.FirstSeq, f.LastSeq, f.Lines)
		}
	}
	if sum.Lines > 0 && sum.Start != shareholder.AuditGenesis {
		fmt.Fprintf(stdout, "the chain checked starts at seq %d, continuing hash %s of an earlier file not checked here\n", sum.FirstSeq, sum.Start)
	}
	more := ""
	if sum.Summarized > 0 {
		more = fmt.Sprintf(", %d more refusals in summaries", sum.Summarized)
	}
	fmt.Fprintf(stdout, "ok: %d lines (%d releases, %d refusals%s), head %s\n", sum.Lines, sum.Releases, sum.Refusals, more, sum.Head)
	if head != "" {
		fmt.Fprintf(stdout, "the given head is seq %d; %d records were added since\n", sum.SeenAt, sum.LastSeq-uint64(sum.SeenAt))
	}
	return nil
}

// auditVerifyError names the file and line of a broken chain.
func auditVerifyError(file string, err error) error {
	var ae *shareholder.AuditError
	if !errors.As(err, &ae) {
		return fmt.Errorf("%s: %w", file, err)
	}
	if ae.File != "" {
		file = ae.File
	}
	msg := fmt.Sprintf("%s: line %d: %s (the lines before it are intact)", file, ae.Line, ae.Msg)
	if ae.Torn {
		msg += "; the daemon cuts a torn last line off at its next start"
	}
	return errors.New(msg)
}
