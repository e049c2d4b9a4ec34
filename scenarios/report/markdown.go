package report

import (
	"fmt"
	"strconv"
	"strings"
)

// markdown renders report.md: r as text, with the figures in drawn embedded
// and a note for each plot that was not drawn.
func markdown(r *Run, countries []string, drawn map[string]figureFile) []byte {
	var b strings.Builder
	name := r.Scenario
	if name == "" {
		name = "(unnamed)"
	}
	fmt.Fprintf(&b, "# Scenario report: %s\n\n", esc(name))
	if d := strings.TrimSpace(r.Description); d != "" {
		for _, line := range strings.Split(d, "\n") {
			b.WriteString(esc(strings.TrimRight(line, " \t\r")))
			b.WriteByte('\n')
		}
		b.WriteByte('\n')
	}

	b.WriteString("## Summary\n\n")
	summary := [][]string{
		{"Scenario", code(r.Scenario)},
		{"Seed", strconv.FormatUint(r.Seed, 10)},
		{"Wall time", seconds(r.WallSeconds) + " s"},
	}
	for _, kv := range r.Summary {
		summary = append(summary, []string{esc(kv.Key), esc(kv.Value)})
	}
	table(&b, []string{"Item", "Value"}, summary)

	b.WriteString("## Timeline\n\n")
	if len(r.Events) == 0 {
		b.WriteString("No timeline events were scheduled.\n\n")
	} else {
		rows := make([][]string, 0, len(r.Events))
		for _, e := range r.Events {
			rows = append(rows, []string{
				strconv.FormatUint(uint64(e.Round), 10), code(e.Phase), code(e.Kind), code(e.Target),
				seconds(e.SecondsSinceStart), esc(e.Outcome),
			})
		}
		table(&b, []string{"Round", "Phase", "Kind", "Target", "t (s)", "Outcome"}, rows)
	}

	b.WriteString("## Aborted attempts\n\n")
	if len(r.Aborted) == 0 {
		b.WriteString("No attempt was aborted.\n\n")
	} else {
		for _, a := range r.Aborted {
			reason := esc(a.Reason)
			if reason == "" {
				reason = "no reason given"
			}
			took := ""
			if a.Cohort > 0 {
				took = fmt.Sprintf(" (%d of %d answered, after %s s)", a.Responders, a.Cohort, seconds(a.Seconds))
			}
			fmt.Fprintf(&b, "- Round %d, attempt %d, at t = %s s%s: %s\n", a.Round, a.Attempt, seconds(a.SecondsSinceStart), took, reason)
		}
		b.WriteByte('\n')
	}

	if len(r.Attempts) > 0 {
		b.WriteString("## Attempts\n\n")
		rows := make([][]string, 0, len(r.Attempts))
		for _, a := range r.Attempts {
			status, deadline := "aborted", ""
			if a.Committed {
				status = "committed"
			}
			if a.AtDeadline {
				deadline = "yes"
			}
			rows = append(rows, []string{strconv.FormatUint(uint64(a.Round), 10), strconv.FormatUint(uint64(a.Attempt), 10), status,
				strconv.Itoa(a.Cohort), strconv.Itoa(a.Responders), number(a.Seconds, 2), deadline, esc(a.Reason)})
		}
		table(&b, []string{"Round", "Attempt", "Status", "Cohort", "Responders", "Seconds", "At deadline", "Closed because"}, rows)
	}

	if len(r.Comparisons) > 0 {
		b.WriteString("## Comparisons\n\n")
		for _, t := range r.Comparisons {
			if t.Title != "" {
				fmt.Fprintf(&b, "### %s\n\n", esc(t.Title))
			}
			header := make([]string, len(t.Header))
			for i, h := range t.Header {
				header[i] = esc(h)
			}
			rows := make([][]string, len(t.Rows))
			for i, row := range t.Rows {
				rows[i] = make([]string, len(row))
				for j, c := range row {
					rows[i][j] = esc(c)
				}
			}
			table(&b, header, rows)
		}
	}

	b.WriteString("## Plots\n\n")
	if len(r.Rounds) == 0 {
		b.WriteString("No rounds were committed, so there are no accuracy, duration or contributor plots and no per-round table.\n\n")
	}
	embed(&b, drawn, AccuracyFile)
	embed(&b, drawn, DurationFile)
	if len(r.LinkBytes) == 0 {
		b.WriteString("No network model was used in this run, so there is no traffic per region link.\n\n")
	} else {
		embed(&b, drawn, LinkBytesFile)
		linkTable(&b, r)
	}
	embed(&b, drawn, ContributorsFile)
	if len(r.Rounds) > 0 && !hasContributors(r) {
		b.WriteString("The rounds did not count contributors per country, so there is no contributors plot.\n\n")
	}
	embed(&b, drawn, EpsilonFile)
	if len(r.Rounds) > 0 && !hasEpsilon(r) {
		b.WriteString("Differential privacy was off (ε = 0 in every round), so there is no ε plot.\n\n")
	}

	if len(r.Rounds) > 0 {
		b.WriteString("## Rounds\n\n")
		roundTable(&b, r, countries)
	}
	return []byte(strings.TrimRight(b.String(), "\n") + "\n")
}

// embed embeds the plot named file with its caption, if it was drawn.
func embed(b *strings.Builder, drawn map[string]figureFile, file string) {
	ff, ok := drawn[file]
	if !ok {
		return
	}
	fmt.Fprintf(b, "### %s\n\n![%s](%s)\n\n*%s*\n\n", esc(ff.alt), esc(ff.alt), ff.name, esc(ff.caption))
}

// linkTable lists the traffic of every region link, busiest first.
func linkTable(b *strings.Builder, r *Run) {
	links := linksByBytes(r)
	var total uint64
	for _, l := range links {
		total += l.bytes
	}
	unit, div := byteUnit(links[0].bytes)
	rows := make([][]string, 0, len(links))
	for _, l := range links {
		share := "–"
		if total > 0 {
			share = fmt.Sprintf("%.1f", 100*float64(l.bytes)/float64(total))
		}
		rows = append(rows, []string{code(l.name), fmt.Sprintf("%.2f", float64(l.bytes)/div), strconv.FormatUint(l.bytes, 10), share})
	}
	table(b, []string{"Link", unit, "Bytes", "Share (%)"}, rows)
}

// roundTable lists the committed rounds, one column per country's accuracy.
func roundTable(b *strings.Builder, r *Run, countries []string) {
	withRegion := map[string]bool{}
	for _, rd := range r.Rounds {
		for c := range rd.ByRegion {
			withRegion[c] = true
		}
	}
	header := []string{"Round", "Accuracy (%)"}
	var cols []string
	for _, c := range countries {
		if withRegion[c] {
			cols = append(cols, c)
			header = append(header, esc(c)+" (%)")
		}
	}
	header = append(header, "Since previous commit (s)", "Committed at t (s)", "Cohort", "Contributors")
	eps := hasEpsilon(r)
	if eps {
		header = append(header, "ε")
	}
	rows := make([][]string, 0, len(r.Rounds))
	for _, rd := range r.Rounds {
		row := []string{strconv.FormatUint(uint64(rd.Round), 10), percent(rd.Accuracy)}
		for _, c := range cols {
			if v, ok := rd.ByRegion[c]; ok {
				row = append(row, percent(v))
			} else {
				row = append(row, "–")
			}
		}
		n, ok := contributors(rd)
		nc := "–"
		if ok {
			nc = strconv.Itoa(n)
		}
		row = append(row, seconds(rd.Seconds), seconds(rd.SecondsSinceStart), strconv.Itoa(rd.Cohort), nc)
		if eps {
			row = append(row, number(rd.Epsilon, 2))
		}
		rows = append(rows, row)
	}
	table(b, header, rows)
}

// table writes a GitHub-flavoured Markdown table of cells already escaped;
// short rows are padded, and the header is widened to the longest row.
func table(b *strings.Builder, header []string, rows [][]string) {
	width := len(header)
	for _, row := range rows {
		width = max(width, len(row))
	}
	if width == 0 {
		return
	}
	line := func(cells []string) {
		b.WriteString("|")
		for i := range width {
			c := ""
			if i < len(cells) {
				c = cells[i]
			}
			b.WriteString(" " + c + " |")
		}
		b.WriteByte('\n')
	}
	line(header)
	b.WriteString("|")
	for range width {
		b.WriteString(" --- |")
	}
	b.WriteByte('\n')
	for _, row := range rows {
		line(row)
	}
	b.WriteByte('\n')
}

// mdEscaper escapes what Markdown would otherwise read as markup, and turns
// line breaks into spaces so that text stays in its table cell.
var mdEscaper = strings.NewReplacer(
	`\`, `\\`, "|", `\|`, "*", `\*`, "_", `\_`, "`", "\\`",
	"[", `\[`, "]", `\]`, "<", "&lt;", ">", "&gt;",
	"\r\n", " ", "\n", " ", "\r", " ",
)

// esc escapes free text for Markdown, in a paragraph or a table cell.
func esc(s string) string { return mdEscaper.Replace(s) }

// code renders s as a code span fit for a table cell: fenced with more
// backticks than it contains, its pipes escaped, its line breaks spaces.
func code(s string) string {
	s = strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(s)
	if strings.TrimSpace(s) == "" {
		return ""
	}
	longest, run := 0, 0
	for _, c := range s {
		if c == '`' {
			run++
			longest = max(longest, run)
		} else {
			run = 0
		}
	}
	fence := strings.Repeat("`", longest+1)
	s = strings.ReplaceAll(s, "|", `\|`)
	if longest > 0 {
		s = " " + s + " "
	}
	return fence + s + fence
}

// percent formats a fraction in [0,1] as a percentage with one decimal.
func percent(x float64) string { return number(100*x, 1) }

// seconds formats a duration in seconds with one decimal.
func seconds(x float64) string { return number(x, 1) }

// number formats x with the given decimals, or a dash if x is not finite.
func number(x float64, decimals int) string {
	if !finite(x) {
		return "–"
	}
	return strconv.FormatFloat(x, 'f', decimals, 64)
}
