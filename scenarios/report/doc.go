// Package report turns what a scenario run produced into a folder a person
// can read and put on a slide: report.md and PNG plots drawn with
// gonum.org/v1/plot.
//
// The runner fills a Run (its rounds, aborted attempts, timeline events,
// bytes per region link and any comparison tables) and calls Write:
//
//	run := &report.Run{Scenario: "international", Rounds: rounds, ...}
//	if err := report.Write("out", run); err != nil {
//		return err
//	}
//
// Write creates the folder if needed and writes:
//
//   - report.md: summary, timeline, aborted attempts, comparisons, the plots
//     with a caption each, and a per-round table;
//   - accuracy.png: test accuracy per round, overall and per country;
//   - round-duration.png: seconds per round, with aborted attempts;
//   - link-bytes.png: megabytes per region link (only with a network model);
//   - contributors.png: contributors per round, stacked by country;
//   - epsilon.png: differential-privacy ε per round (only when ε > 0).
//
// Every plot is FigureWidthPx × FigureHeightPx pixels (8 × 4.5 inches at
// FigureDPI), with a title, axis labels with units, a legend to the right of
// the data and timeline events marked as dashed grey lines labelled above
// the data. A country keeps its colour in every plot. Countries, links and
// columns are sorted so the same Run always gives the same bytes.
package report
