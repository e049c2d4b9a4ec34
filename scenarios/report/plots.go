package report

import (
	"fmt"
	"image/color"
	"math"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// Each xxxFigure builds one plot of the report, or returns false when r has
// no data for it. Non-finite values are left out: gonum refuses them.

// maxContiguousRounds bounds the span of round numbers the contributors
// plot lays out one bar slot per round for.
const maxContiguousRounds = 20000

// accuracyFigure plots test accuracy per round: overall in thick black, one
// line per country, the target and the timeline's events.
func accuracyFigure(r *Run, countries []string) (*figure, figureFile, bool) {
	if len(r.Rounds) == 0 {
		return nil, figureFile{}, false
	}
	f := newFigure("Test accuracy per round", "Round", "Test accuracy (%)")
	f.p.X.Tick.Marker = niceTicks{integer: true}
	lo, hi := math.Inf(1), math.Inf(-1)
	see := func(v float64) { lo, hi = math.Min(lo, v), math.Max(hi, v) }

	var overall plotter.XYs
	for _, rd := range r.Rounds {
		if finite(rd.Accuracy) {
			overall = append(overall, plotter.XY{X: float64(rd.Round), Y: 100 * rd.Accuracy})
			see(100 * rd.Accuracy)
		}
	}
	type series struct {
		name string
		ps   []plot.Plotter
	}
	var perCountry []series
	for i, c := range countries {
		var xys plotter.XYs
		for _, rd := range r.Rounds {
			if v, ok := rd.ByRegion[c]; ok && finite(v) {
				xys = append(xys, plotter.XY{X: float64(rd.Round), Y: 100 * v})
				see(100 * v)
			}
		}
		if len(xys) > 0 {
			perCountry = append(perCountry, series{c, curve(xys, seriesStyle(i, vg.Points(1.6)))})
		}
	}
	if len(overall) == 0 && len(perCountry) == 0 {
		return nil, figureFile{}, false
	}
	for _, s := range perCountry {
		f.p.Add(s.ps...)
	}
	if len(overall) > 0 {
		ps := curve(overall, draw.LineStyle{Color: black, Width: vg.Points(3.2)})
		f.p.Add(ps...)
		f.addLegend("overall", thumbs(ps)...)
	}
	for _, s := range perCountry {
		f.addLegend(s.name, thumbs(s.ps)...)
	}
	target := 100 * r.TargetAccuracy
	hasTarget := r.TargetAccuracy > 0 && finite(target)
	if hasTarget {
		see(target)
		t := &hline{y: target, style: draw.LineStyle{Color: black, Width: vg.Points(1.2), Dashes: []vg.Length{vg.Points(8), vg.Points(4)}}}
		f.p.Add(t)
		f.addLegend(fmt.Sprintf("target %s%%", trimFloat(target)), t)
	}
	f.markEvents(r.Events)
	f.p.Y.Min = math.Max(0, math.Floor((lo-2)/10)*10)
	f.p.Y.Max = math.Min(100, math.Ceil((hi+2)/10)*10)

	var parts []string
	if len(overall) > 0 {
		parts = append(parts, "the global model's accuracy on the test set after each committed round (thick black)")
	}
	if len(perCountry) > 0 {
		parts = append(parts, "its accuracy on each country's own validation data (one colour per country)")
	}
	caption := "Test accuracy in percent: " + strings.Join(parts, " and ")
	if hasTarget {
		caption += fmt.Sprintf(", against the %s%% target (dashed)", trimFloat(target))
	}
	caption += eventsClause(r) + "."
	return f, figureFile{AccuracyFile, "Test accuracy per round", caption}, true
}

// durationFigure plots seconds per committed round, the aborted attempts as
// red crosses on the round axis and the timeline's events.
func durationFigure(r *Run, _ []string) (*figure, figureFile, bool) {
	if len(r.Rounds) == 0 {
		return nil, figureFile{}, false
	}
	f := newFigure("Round duration", "Round", "Since the previous commit (s)")
	f.p.X.Tick.Marker = niceTicks{integer: true}
	var xys plotter.XYs
	for _, rd := range r.Rounds {
		if finite(rd.Seconds) {
			xys = append(xys, plotter.XY{X: float64(rd.Round), Y: rd.Seconds})
		}
	}
	if len(xys) == 0 {
		return nil, figureFile{}, false
	}
	line := &plotter.Line{XYs: xys, LineStyle: draw.LineStyle{Color: palette[0], Width: vg.Points(2)}}
	pts := &plotter.Scatter{XYs: xys, GlyphStyle: draw.GlyphStyle{Color: palette[0], Radius: vg.Points(2.6), Shape: draw.CircleGlyph{}}}
	f.p.Add(line, pts)
	f.addLegend("committed round", line, pts)
	if len(r.Aborted) > 0 {
		var ab plotter.XYs
		for _, a := range r.Aborted {
			ab = append(ab, plotter.XY{X: float64(a.Round), Y: 0})
		}
		crosses := &plotter.Scatter{XYs: ab, GlyphStyle: draw.GlyphStyle{Color: alarmRed, Radius: vg.Points(5), Shape: thickCross{width: vg.Points(2.2)}}}
		f.p.Add(crosses)
		f.addLegend(fmt.Sprintf("aborted attempt (%d)", len(r.Aborted)), crosses)
	}
	f.markEvents(r.Events)
	f.p.Y.Min = 0
	f.p.Y.Max = f.p.Y.Max * 1.05

	caption := "Seconds from the previous round's commit to this one's (the first: from its opening), failed attempts and failovers included"
	if len(r.Aborted) > 0 {
		caption += ", with aborted attempts as red crosses on the axis at the round they tried"
	}
	caption += eventsClause(r) + "."
	return f, figureFile{DurationFile, "Round duration", caption}, true
}

// linkBytesFigure is a horizontal bar chart of the traffic per region link,
// busiest at the top.
func linkBytesFigure(r *Run, _ []string) (*figure, figureFile, bool) {
	links := linksByBytes(r)
	if len(links) == 0 {
		return nil, figureFile{}, false
	}
	shown := links
	title := "Traffic per region link"
	if len(links) > maxLinksPlotted {
		shown = links[:maxLinksPlotted]
		title = fmt.Sprintf("Traffic per region link (busiest %d of %d)", maxLinksPlotted, len(links))
	}
	unit, div := byteUnit(links[0].bytes)
	f := newFigure(title, fmt.Sprintf("Data carried (%s)", unit), "Link (from→to)")
	n := len(shown)
	vals := make(plotter.Values, n)
	names := make([]string, n)
	var at plotter.XYs
	var texts []string
	for i, l := range shown {
		j := n - 1 - i // busiest on top
		vals[j] = float64(l.bytes) / div
		names[j] = truncate(l.name, maxLegendRunes)
	}
	for j, v := range vals {
		at = append(at, plotter.XY{X: v, Y: float64(j)})
		texts = append(texts, trimAmount(v)+" "+unit)
	}
	bar, err := plotter.NewBarChart(vals, 1) // sized when drawn
	if err != nil {
		return nil, figureFile{}, false
	}
	bar.Horizontal = true
	bar.Color = palette[0]
	bar.LineStyle.Width = 0
	f.p.Add(bar)
	f.bars, f.barSlots = append(f.bars, bar), n
	labels, err := plotter.NewLabels(plotter.XYLabels{XYs: at, Labels: texts})
	if err != nil {
		return nil, figureFile{}, false
	}
	for i := range labels.TextStyle {
		labels.TextStyle[i].Font = font.From(sans, tickSize)
		labels.TextStyle[i].Color = textGrey
		labels.TextStyle[i].YAlign = text.YCenter
	}
	labels.Offset = vg.Point{X: vg.Points(5)}
	f.p.Add(labels)
	f.p.NominalY(names...)
	f.grid.vertical = true
	f.p.X.Min = 0
	// Room on the right for the value after the longest bar.
	f.p.X.Max = f.p.X.Max * 1.12

	caption := fmt.Sprintf("Data carried over each region link in the modelled WAN, in %s (10^%d bytes), busiest first", unit, int(math.Log10(div)))
	if len(links) > maxLinksPlotted {
		caption += fmt.Sprintf("; the %d busiest of %d links are drawn and the table below lists all", maxLinksPlotted, len(links))
	}
	return f, figureFile{LinkBytesFile, "Bytes per region link", caption + "."}, true
}

// contributorsFigure stacks the contributors of each round by country, with
// the cohort size as a line.
func contributorsFigure(r *Run, countries []string) (*figure, figureFile, bool) {
	if !hasContributors(r) {
		return nil, figureFile{}, false
	}
	first, last := r.Rounds[0].Round, r.Rounds[0].Round
	for _, rd := range r.Rounds {
		first, last = min(first, rd.Round), max(last, rd.Round)
	}
	span := int(last-first) + 1
	if span > maxContiguousRounds {
		return nil, figureFile{}, false
	}
	f := newFigure("Contributors per round, by country", "Round", "Contributors (participants)")
	f.p.X.Tick.Marker = niceTicks{integer: true}
	f.p.Y.Tick.Marker = niceTicks{integer: true}

	type stack struct {
		name string
		bar  *plotter.BarChart
	}
	var stacks []stack
	var below *plotter.BarChart
	top := 0.0
	for i, c := range countries {
		vals := make(plotter.Values, span)
		counted := false
		for _, rd := range r.Rounds {
			if v, ok := rd.ContributorsByRegion[c]; ok {
				vals[rd.Round-first] = float64(v)
				counted = true
			}
		}
		if !counted {
			continue
		}
		bar, err := plotter.NewBarChart(vals, 1) // sized when drawn
		if err != nil {
			return nil, figureFile{}, false
		}
		bar.XMin = float64(first)
		bar.Color = fill(i)
		bar.LineStyle = draw.LineStyle{Color: color.White, Width: vg.Points(0.4)}
		if below != nil {
			bar.StackOn(below)
		}
		below = bar
		f.p.Add(bar)
		f.bars = append(f.bars, bar)
		stacks = append(stacks, stack{c, bar})
	}
	f.barSlots = span
	for i := range span {
		top = math.Max(top, below.BarHeight(i))
	}
	var cohort plotter.XYs
	for _, rd := range r.Rounds {
		if rd.Cohort > 0 {
			cohort = append(cohort, plotter.XY{X: float64(rd.Round), Y: float64(rd.Cohort)})
			top = math.Max(top, float64(rd.Cohort))
		}
	}
	if len(cohort) > 0 {
		line := &plotter.Line{XYs: cohort, LineStyle: draw.LineStyle{Color: black, Width: vg.Points(1.6), Dashes: []vg.Length{vg.Points(6), vg.Points(3)}}}
		pts := &plotter.Scatter{XYs: cohort, GlyphStyle: draw.GlyphStyle{Color: black, Radius: vg.Points(2), Shape: draw.CircleGlyph{}}}
		f.p.Add(line, pts)
		f.addLegend("cohort size", line, pts)
	}
	for i := len(stacks) - 1; i >= 0; i-- { // the legend reads top to bottom like the stack
		f.addLegend(stacks[i].name, stacks[i].bar)
	}
	f.markEvents(r.Events)
	f.p.Add(f.marks) // the bars are opaque: draw the event lines over them too
	f.p.Y.Min = 0
	f.p.Y.Max = math.Max(1, top*1.08)

	caption := "Participants whose update was counted in each committed round, stacked by country"
	if len(cohort) > 0 {
		caption += ", under the size of the cohort selected (dashed)"
	}
	caption += eventsClause(r) + "."
	return f, figureFile{ContributorsFile, "Contributors per round by country", caption}, true
}

// epsilonFigure plots the differential-privacy ε after each round.
func epsilonFigure(r *Run, _ []string) (*figure, figureFile, bool) {
	if !hasEpsilon(r) {
		return nil, figureFile{}, false
	}
	f := newFigure("Differential privacy: ε after each round", "Round", "Privacy loss ε (cumulative)")
	f.p.X.Tick.Marker = niceTicks{integer: true}
	var xys plotter.XYs
	for _, rd := range r.Rounds {
		if rd.Epsilon > 0 && finite(rd.Epsilon) {
			xys = append(xys, plotter.XY{X: float64(rd.Round), Y: rd.Epsilon})
		}
	}
	line := &plotter.Line{XYs: xys, LineStyle: draw.LineStyle{Color: palette[4], Width: vg.Points(2)}}
	pts := &plotter.Scatter{XYs: xys, GlyphStyle: draw.GlyphStyle{Color: palette[4], Radius: vg.Points(2.6), Shape: draw.CircleGlyph{}}}
	f.p.Add(line, pts)
	f.p.Y.Min = 0
	f.p.Y.Max = f.p.Y.Max * 1.08
	return f, figureFile{EpsilonFile, "Differential privacy ε per round",
		"The privacy loss ε accumulated by the end of each committed round; lower means stronger privacy."}, true
}

// curve is a line through xys, with a dot when there is a single point
// (a line through one point draws nothing).
func curve(xys plotter.XYs, sty draw.LineStyle) []plot.Plotter {
	ps := []plot.Plotter{&plotter.Line{XYs: xys, LineStyle: sty}}
	if len(xys) == 1 {
		ps = append(ps, &plotter.Scatter{XYs: xys, GlyphStyle: draw.GlyphStyle{Color: sty.Color, Radius: sty.Width + vg.Points(1), Shape: draw.CircleGlyph{}}})
	}
	return ps
}

// thumbs returns the plotters of ps that draw a legend thumbnail.
func thumbs(ps []plot.Plotter) []plot.Thumbnailer {
	var out []plot.Thumbnailer
	for _, p := range ps {
		if t, ok := p.(plot.Thumbnailer); ok {
			out = append(out, t)
		}
	}
	return out
}

// fill is the bar colour of the i-th country: its palette colour, then
// once the palette has been used up a paler, then a darker version of it
// (a fill cannot be dashed).
func fill(i int) color.Color {
	c := palette[i%len(palette)].(color.RGBA)
	mix := func(v, to uint8, f float64) uint8 { return uint8(float64(v) + f*(float64(to)-float64(v))) }
	switch (i / len(palette)) % 3 {
	case 1:
		return color.RGBA{R: mix(c.R, 0xff, 0.45), G: mix(c.G, 0xff, 0.45), B: mix(c.B, 0xff, 0.45), A: 0xff}
	case 2:
		return color.RGBA{R: mix(c.R, 0, 0.4), G: mix(c.G, 0, 0.4), B: mix(c.B, 0, 0.4), A: 0xff}
	}
	return c
}

// thickCross is a × glyph drawn with a given stroke width, bolder than
// draw.CrossGlyph so that it shows on an axis.
type thickCross struct{ width vg.Length }

func (g thickCross) DrawGlyph(c *draw.Canvas, sty draw.GlyphStyle, pt vg.Point) {
	ls := draw.LineStyle{Color: sty.Color, Width: g.width}
	r := sty.Radius
	c.StrokeLine2(ls, pt.X-r, pt.Y-r, pt.X+r, pt.Y+r)
	c.StrokeLine2(ls, pt.X-r, pt.Y+r, pt.X+r, pt.Y-r)
}

// eventsClause is the end of a caption that explains the event lines.
func eventsClause(r *Run) string {
	if len(r.Events) == 0 {
		return ""
	}
	return "; dashed grey lines mark timeline events, labelled above the plot where there is room (the Timeline table lists them all)"
}

// trimFloat formats x with at most one decimal, dropping a trailing ".0".
func trimFloat(x float64) string {
	s := fmt.Sprintf("%.1f", x)
	return strings.TrimSuffix(s, ".0")
}

// trimAmount formats a bar's value: one decimal below 100, none above.
func trimAmount(x float64) string {
	if x >= 100 {
		return fmt.Sprintf("%.0f", x)
	}
	return fmt.Sprintf("%.1f", x)
}
