package web

import (
	"fmt"
	"html/template"
	"io/fs"
	"path"
	"strings"
	"time"
)

var funcs = template.FuncMap{
	"ts": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format("2006-01-02 15:04:05")
	},
	"ends": func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return t.UTC().Format("2006-01-02 15:04:05")
	},
	"ago": func(now, t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		d := now.Sub(t).Round(time.Second)
		if d < 0 {
			return "in " + (-d).String()
		}
		return d.String() + " ago"
	},
	"q": urlQueryEscape,
}

func (p *Pages) parseTemplates() error {
	layout, err := template.New("layout").Funcs(funcs).ParseFS(templateFS, "templates/layout.html")
	if err != nil {
		return fmt.Errorf("web: layout: %w", err)
	}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return err
	}
	p.tmpl = map[string]*template.Template{}
	for _, n := range names {
		name := strings.TrimSuffix(path.Base(n), ".html")
		if name == "layout" || name == "rows" {
			continue
		}
		t, err := layout.Clone()
		if err == nil {
			_, err = t.ParseFS(templateFS, "templates/rows.html", n)
		}
		if err != nil {
			return fmt.Errorf("web: template %s: %w", name, err)
		}
		p.tmpl[name] = t
	}
	return nil
}
