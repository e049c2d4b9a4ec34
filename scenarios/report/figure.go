package report

import (
	"bytes"
	"image/color"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	xfont "golang.org/x/image/font"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Size of every plot. 8 × 4.5 inches is 16:9, the shape of a slide; at
// FigureDPI the fonts below stay readable when the image fills half a slide.
const (
	FigureDPI      = 200
	FigureWidthPx  = 1600 // 8 in at FigureDPI
	FigureHeightPx = 900  // 4.5 in at FigureDPI

	figureWidth  = 8 * vg.Inch
	figureHeight = 4.5 * vg.Inch
)

// sans is the report's typeface: Liberation Sans, metrically Arial, embedded
// in gonum's font cache so plots look the same on every machine.
var (
	sans     = font.Font{Typeface: "Liberation", Variant: "Sans"}
	sansBold = font.Font{Typeface: "Liberation", Variant: "Sans", Weight: xfont.WeightBold}
)

// Font sizes, in points.
const (
	titleSize     = 16
	labelSize     = 13
	tickSize      = 11
	legendSize    = 11
	minLegendSize = 8
	eventSize     = 10
)

var (
	// palette is the fixed qualitative palette (Tableau 10 without its grey
	// and olive); country i of the sorted list gets palette[i%8].
	palette = []color.Color{
		rgb(0x1f, 0x77, 0xb4), // blue
		rgb(0xff, 0x7f, 0x0e), // orange
		rgb(0x2c, 0xa0, 0x2c), // green
		rgb(0xd6, 0x27, 0x28), // red
		rgb(0x94, 0x67, 0xbd), // purple
		rgb(0x8c, 0x56, 0x4b), // brown
		rgb(0xe3, 0x77, 0xc2), // pink
		rgb(0x17, 0xbe, 0xcf), // cyan
	}
	black      = color.Black
	markerGrey = rgb(0x80, 0x80, 0x80)
	textGrey   = rgb(0x33, 0x33, 0x33)
	gridGrey   = rgb(0xdd, 0xdd, 0xdd)
	alarmRed   = rgb(0xd6, 0x27, 0x28)
)

func rgb(r, g, b uint8) color.RGBA { return color.RGBA{R: r, G: g, B: b, A: 0xff} }

// seriesStyle is the line style of the i-th series (country) of a plot:
// its palette colour, dashed once the palette has been used up.
func seriesStyle(i int, width vg.Length) draw.LineStyle {
	return draw.LineStyle{
		Color:  palette[i%len(palette)],
		Width:  width,
		Dashes: plotutil.Dashes(i / len(palette)),
	}
}

// figure is a plot being built: the gonum plot, a legend drawn to the right
// of it rather than over the data, and timeline events drawn as dashed
// lines with their labels in a band between the title and the data.
type figure struct {
	p       *plot.Plot
	entries []legendEntry
	events  []eventMark
	marks   *vlines // the events' lines, drawn under the data
	grid    *grid
	// bars, if any, are sized when the figure is drawn to fill barFill of
	// the room each of barSlots slots gets along the category axis.
	bars     []*plotter.BarChart
	barSlots int
}

// A bar fills barFill of its slot, up to maxBarWidth: one round or one link
// makes a bar, not a wall.
const (
	barFill     = 0.75
	maxBarWidth = vg.Length(40) // points
)

// legendEntry is one line of the legend: a name and how its series looks.
type legendEntry struct {
	name   string
	thumbs []plot.Thumbnailer
}

// eventMark is one or more events tied to the same round, with the labels
// it may be given above the plot, longest first.
type eventMark struct {
	x      float64
	labels []string
}

// newFigure returns a figure with the report's fonts, a light horizontal
// grid and the given title and axis labels.
func newFigure(title, xLabel, yLabel string) *figure {
	p := plot.New()
	p.Title.Text = title
	p.Title.TextStyle.Font = font.From(sansBold, titleSize)
	p.Title.Padding = vg.Points(8)
	p.X.Label.Text = xLabel
	p.Y.Label.Text = yLabel
	for _, a := range []*plot.Axis{&p.X, &p.Y} {
		a.Label.TextStyle.Font = font.From(sans, labelSize)
		a.Label.Padding = vg.Points(4)
		a.Tick.Label.Font = font.From(sans, tickSize)
		a.Padding = vg.Points(4)
	}
	p.X.Tick.Marker = niceTicks{}
	p.Y.Tick.Marker = niceTicks{}
	g := &grid{style: draw.LineStyle{Color: gridGrey, Width: vg.Points(0.75)}}
	p.Add(g)
	marks := &vlines{style: draw.LineStyle{Color: markerGrey, Width: vg.Points(1.2), Dashes: []vg.Length{vg.Points(5), vg.Points(3)}}}
	p.Add(marks)
	return &figure{p: p, marks: marks, grid: g}
}

// addLegend adds an entry to the legend beside the plot.
func (f *figure) addLegend(name string, thumbs ...plot.Thumbnailer) {
	f.entries = append(f.entries, legendEntry{truncate(name, maxLegendRunes), thumbs})
}

// legends lays the legend out in columns no taller than height: one column
// if it fits at a font size from legendSize down to minLegendSize, else as
// few columns of minLegendSize as fit.
func (f *figure) legends(height vg.Length) []plot.Legend {
	build := func(size vg.Length, entries []legendEntry) plot.Legend {
		l := plot.NewLegend()
		l.TextStyle.Font = font.From(sans, size)
		l.Top, l.Left = true, true
		l.Padding = size * 0.3
		l.ThumbnailWidth = size * 2.2
		for _, e := range entries {
			l.Add(e.name, e.thumbs...)
		}
		return l
	}
	tall := func(l plot.Legend) vg.Length { return l.Rectangle(draw.Canvas{}).Size().Y }
	for size := vg.Length(legendSize); size >= minLegendSize; size-- {
		if l := build(size, f.entries); tall(l) <= height {
			return []plot.Legend{l}
		}
	}
	one := build(minLegendSize, f.entries[:1])
	perColumn := max(1, int((height+one.Padding)/(tall(one)+one.Padding)))
	var out []plot.Legend
	for rest := f.entries; len(rest) > 0; {
		n := min(perColumn, len(rest))
		out = append(out, build(minLegendSize, rest[:n]))
		rest = rest[n:]
	}
	return out
}

// markEvents draws a dashed grey line under the data at the round of every
// event, labelled above the data with its kind and target (events of one
// round share a label), widens the x axis to take them in and adds a legend
// entry.
func (f *figure) markEvents(events []Event) {
	if len(events) == 0 {
		return
	}
	byRound := map[uint32][]string{} // full labels
	kinds := map[uint32][]string{}   // short labels: the kinds alone, once each
	for _, e := range events {
		byRound[e.Round] = append(byRound[e.Round], eventLabel(e))
		if k := shortKind(e.Kind); !slices.Contains(kinds[e.Round], k) {
			kinds[e.Round] = append(kinds[e.Round], k)
		}
	}
	rounds := make([]uint32, 0, len(byRound))
	for rd := range byRound {
		rounds = append(rounds, rd)
	}
	sort.Slice(rounds, func(i, j int) bool { return rounds[i] < rounds[j] })
	for _, rd := range rounds {
		x := float64(rd)
		f.marks.xs = append(f.marks.xs, x)
		m := eventMark{x: x, labels: []string{strings.Join(byRound[rd], " + ")}}
		if short := strings.Join(kinds[rd], " + "); short != m.labels[0] {
			m.labels = append(m.labels, short)
		}
		f.events = append(f.events, m)
		f.p.X.Min = math.Min(f.p.X.Min, x)
		f.p.X.Max = math.Max(f.p.X.Max, x)
	}
	f.addLegend("timeline event", f.marks)
}

// eventLabel is the short label of e on a plot: its kind and target.
func eventLabel(e Event) string {
	return truncate(strings.TrimSpace(shortKind(e.Kind)+" "+e.Target), maxLabelRunes)
}

// shortKind is the kind of an event as a plot labels it.
func shortKind(kind string) string {
	switch kind {
	case "kill_coordinator":
		kind = "kill"
	case "restart_coordinator":
		kind = "restart"
	}
	return truncate(strings.TrimSpace(strings.ReplaceAll(kind, "_", " ")), maxLabelRunes)
}

// truncate cuts s to at most n runes, ending it with an ellipsis if cut.
func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// render draws the figure as a FigureWidthPx × FigureHeightPx PNG.
func (f *figure) render() ([]byte, error) {
	c := vgimg.NewWith(vgimg.UseWH(figureWidth, figureHeight), vgimg.UseDPI(FigureDPI))
	full := draw.New(c)
	margin := vg.Points(10)
	area := draw.Crop(full, margin, -margin, margin, -margin)

	// The legend goes right of the plot, from the top of the data down;
	// before the layout, assume the most room event labels may take.
	sty := f.eventStyle()
	rowH := sty.Height("Mg") + vg.Points(3)
	plotArea := area
	gap := vg.Points(12)
	var legends []plot.Legend
	var widths []vg.Length
	if len(f.entries) > 0 {
		height := area.Size().Y - f.p.Title.TextStyle.Height(f.p.Title.Text) - f.p.Title.Padding
		if len(f.events) > 0 {
			height -= maxEventLabelRows*rowH + vg.Points(4)
		}
		legends = f.legends(height)
		total := vg.Length(0)
		for i := range legends {
			w := legends[i].Rectangle(area).Size().X
			widths = append(widths, w)
			total += w + gap
		}
		plotArea = draw.Crop(area, 0, -total, 0, 0)
	}

	if len(f.bars) > 0 && f.barSlots > 0 {
		room := f.p.DataCanvas(plotArea).Size()
		along := room.X
		if f.bars[0].Horizontal {
			along = room.Y
		}
		w := min(maxBarWidth, max(vg.Points(0.5), barFill*along/vg.Length(f.barSlots)))
		for _, b := range f.bars {
			b.Width = w
		}
	}

	// Event labels go in rows above the data; the x positions do not depend
	// on the plot's height, so lay them out first and make room for them.
	var placed []placedLabel
	if len(f.events) > 0 {
		var rows int
		placed, rows = layoutEvents(f.p, plotArea, f.events, sty)
		f.p.Title.Padding += vg.Length(rows)*rowH + vg.Points(4)
	}

	f.p.Draw(plotArea)
	data := f.p.DataCanvas(plotArea)
	drawEventLabels(data, placed, sty, rowH)

	lc := area
	lc.Min.X = plotArea.Max.X + gap
	lc.Max.Y = data.Max.Y
	for i := range legends {
		legends[i].Draw(lc)
		lc.Min.X += widths[i] + gap
	}

	var buf bytes.Buffer
	if _, err := (vgimg.PngCanvas{Canvas: c}).WriteTo(&buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func (f *figure) eventStyle() text.Style {
	return text.Style{
		Color:   textGrey,
		Font:    font.From(sans, eventSize),
		XAlign:  draw.XLeft,
		YAlign:  draw.YBottom,
		Handler: plot.DefaultTextHandler,
	}
}

// placedLabel is an event label laid out above the data: the x of its line,
// where its text starts and its row (0 is nearest the data).
type placedLabel struct {
	lineX, textX vg.Length
	row          int
	text         string
}

// layoutEvents places the event labels in rows above the data canvas so
// that no label overlaps another or the leader of a label above it. A label
// sits centred on its line, or just right or left of it, in one of
// maxEventLabelRows rows, in its full or its short form. Marks are taken
// left to right, and each takes the place that covers the fewest lines of
// marks still to come (a covered line can get no label of its own), then
// the full form, then the lowest row. A mark with no room is left
// unlabelled: its line still shows and the report's timeline table lists
// it. It returns the labels placed and the number of rows used.
func layoutEvents(p *plot.Plot, area draw.Canvas, events []eventMark, sty text.Style) ([]placedLabel, int) {
	data := p.DataCanvas(area)
	trX, _ := p.Transforms(&data)
	gap := sty.Width(" ")
	lead := vg.Points(1)  // half the room a leader takes in a row below its label
	nudge := vg.Points(3) // how far past its line a label set beside it reaches
	type span struct{ lo, hi vg.Length }
	rows := make([][]span, maxEventLabelRows) // what each row holds: labels and the leaders crossing it
	free := func(row int, lo, hi vg.Length) bool {
		for _, s := range rows[row] {
			if lo < s.hi && s.lo < hi {
				return false
			}
		}
		return true
	}
	xs := make([]vg.Length, len(events))
	for i, e := range events {
		xs[i] = trX(e.x)
	}
	var out []placedLabel
	used := 0
	for i, e := range events {
		lx := xs[i]
		if lx < data.Min.X-1 || lx > data.Max.X+1 {
			continue
		}
		best, bestCost := placedLabel{row: -1}, len(events)+1
		for _, label := range e.labels {
			w := sty.Width(label)
			for row := range maxEventLabelRows {
				for _, x := range []vg.Length{lx - w/2, lx - nudge, lx + nudge - w} {
					x = max(min(x, area.Max.X-w), area.Min.X)
					if lx < x || lx > x+w || !free(row, x-gap, x+w+gap) {
						continue
					}
					clear := true
					for below := range row {
						clear = clear && free(below, lx-lead, lx+lead)
					}
					if !clear {
						continue
					}
					cost := 0
					for _, later := range xs[i+1:] {
						if later >= x-gap && later <= x+w+gap {
							cost++
						}
					}
					if cost < bestCost {
						best, bestCost = placedLabel{lineX: lx, textX: x, row: row, text: label}, cost
					}
				}
			}
		}
		if best.row < 0 {
			continue
		}
		w := sty.Width(best.text)
		rows[best.row] = append(rows[best.row], span{best.textX, best.textX + w})
		for below := range best.row {
			rows[below] = append(rows[below], span{lx - lead, lx + lead})
		}
		used = max(used, best.row+1)
		out = append(out, best)
	}
	return out, used
}

// drawEventLabels draws the labels above data, each joined to the top of
// its line by a thin grey leader.
func drawEventLabels(data draw.Canvas, labels []placedLabel, sty text.Style, rowH vg.Length) {
	leader := draw.LineStyle{Color: markerGrey, Width: vg.Points(0.8)}
	base := data.Max.Y + vg.Points(4)
	for _, l := range labels {
		y := base + vg.Length(l.row)*rowH
		data.StrokeLine2(leader, l.lineX, data.Max.Y, l.lineX, y)
		data.FillText(sty, vg.Point{X: l.textX, Y: y}, l.text)
	}
}

// vlines draws full-height vertical lines at the given x values; its legend
// thumbnail is a vertical line too.
type vlines struct {
	xs    []float64
	style draw.LineStyle
}

func (v *vlines) Plot(c draw.Canvas, p *plot.Plot) {
	trX, _ := p.Transforms(&c)
	for _, x := range v.xs {
		X := trX(x)
		if X < c.Min.X-1 || X > c.Max.X+1 {
			continue
		}
		c.StrokeLine2(v.style, X, c.Min.Y, X, c.Max.Y)
	}
}

func (v *vlines) Thumbnail(c *draw.Canvas) {
	x := (c.Min.X + c.Max.X) / 2
	c.StrokeLine2(v.style, x, c.Min.Y, x, c.Max.Y)
}

// hline draws a horizontal line across the whole data area at y.
type hline struct {
	y     float64
	style draw.LineStyle
}

func (h *hline) Plot(c draw.Canvas, p *plot.Plot) {
	_, trY := p.Transforms(&c)
	Y := trY(h.y)
	if !c.ContainsY(Y) {
		return
	}
	c.StrokeLine2(h.style, c.Min.X, Y, c.Max.X, Y)
}

func (h *hline) Thumbnail(c *draw.Canvas) {
	y := (c.Min.Y + c.Max.Y) / 2
	c.StrokeLine2(h.style, c.Min.X, y, c.Max.X, y)
}

// grid draws light lines at the labelled ticks of the y axis, or of the x
// axis if vertical is set.
type grid struct {
	style    draw.LineStyle
	vertical bool
}

func (g *grid) Plot(c draw.Canvas, p *plot.Plot) {
	trX, trY := p.Transforms(&c)
	a := &p.Y
	if g.vertical {
		a = &p.X
	}
	for _, t := range a.Tick.Marker.Ticks(a.Min, a.Max) {
		if t.IsMinor() {
			continue
		}
		if g.vertical {
			X := trX(t.Value)
			if X >= c.Min.X-1 && X <= c.Max.X+1 {
				c.StrokeLine2(g.style, X, c.Min.Y, X, c.Max.Y)
			}
			continue
		}
		Y := trY(t.Value)
		if Y >= c.Min.Y-1 && Y <= c.Max.Y+1 {
			c.StrokeLine2(g.style, c.Min.X, Y, c.Max.X, Y)
		}
	}
}

// niceTicks labels round values, steps of 1, 2 or 5 times a power of ten
// giving about six labels, with an unlabelled tick halfway between. With
// integer set, for an axis of rounds or counts, it marks whole numbers only.
type niceTicks struct{ integer bool }

func (t niceTicks) Ticks(lo, hi float64) []plot.Tick {
	if !finite(lo) || !finite(hi) || hi <= lo {
		return nil
	}
	step := niceStep((hi - lo) / 6)
	if t.integer {
		step = math.Max(1, step)
	}
	decimals := max(0, int(-math.Floor(math.Log10(step)+1e-9)))
	half := step / 2
	if t.integer && half != math.Trunc(half) {
		half = step
	}
	first, last := math.Ceil(lo/half-1e-9), math.Floor(hi/half+1e-9)
	if last-first > 100 || first+1 == first {
		// A range too narrow for its magnitude: mark its ends.
		return []plot.Tick{{Value: lo, Label: strconv.FormatFloat(lo, 'g', 6, 64)}, {Value: hi, Label: strconv.FormatFloat(hi, 'g', 6, 64)}}
	}
	var out []plot.Tick
	for k := first; k <= last; k++ {
		v := k * half
		if v == 0 {
			v = 0 // not -0, which would be labelled "-0"
		}
		tk := plot.Tick{Value: v}
		if half == step || math.Mod(k, 2) == 0 {
			tk.Label = strconv.FormatFloat(v, 'f', decimals, 64)
		}
		out = append(out, tk)
	}
	return out
}

// niceStep returns 1, 2, 5 or 10 times the power of ten nearest below x.
func niceStep(x float64) float64 {
	p := math.Pow(10, math.Floor(math.Log10(x)))
	switch m := x / p; {
	case m < 1.5:
		return p
	case m < 3:
		return 2 * p
	case m < 7:
		return 5 * p
	default:
		return 10 * p
	}
}
