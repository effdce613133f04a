package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/bhrd/bhrd/pkg/queue"
)

// input is one request object, from a form (bhr-client's block call sends
// form data, booleans as "True"/"False") or from JSON (everything else).
// Getters record type errors per field, DRF style, instead of failing at
// the first, so one answer lists every bad field.
type input struct {
	form url.Values
	js   jsonObject
	errs map[string][]string
}

func (in *input) fail(field, msg string) {
	if in.errs == nil {
		in.errs = map[string][]string{}
	}
	in.errs[field] = append(in.errs[field], msg)
}

// err is the 400 for every recorded field error, or nil.
func (in *input) err() error {
	if len(in.errs) == 0 {
		return nil
	}
	return &httpError{status: http.StatusBadRequest, body: in.errs}
}

// fieldErrors are the recorded field errors for the Service, by field.
func (in *input) fieldErrors() []*queue.FieldError {
	if len(in.errs) == 0 {
		return nil
	}
	fields := make([]string, 0, len(in.errs))
	for f := range in.errs {
		fields = append(fields, f)
	}
	sort.Strings(fields)
	var out []*queue.FieldError
	for _, f := range fields {
		for _, msg := range in.errs[f] {
			out = append(out, queue.NewFieldError(f, msg))
		}
	}
	return out
}

// nonFieldErrors is DRF's key for an error of a whole object.
const nonFieldErrors = "non_field_errors"

// nonFieldMessage is the message of an errNonField.
func nonFieldMessage(err error) string {
	var he *httpError
	if errors.As(err, &he) {
		if m, ok := he.body.(map[string][]string); ok && len(m[nonFieldErrors]) > 0 {
			return m[nonFieldErrors][0]
		}
	}
	return err.Error()
}

// raw returns a field's value as text and what kind of JSON value it was
// ('"' string, '0' number, 'b' boolean, '{' or '[' structure; 's' for
// form values). Absent and JSON null fields report ok false.
func (in *input) raw(field string) (s string, kind byte, ok bool) {
	if in.form != nil {
		v, ok := in.form[field]
		if !ok || len(v) == 0 {
			return "", 0, false
		}
		return v[0], 's', true
	}
	m, ok := in.js.get(field)
	if !ok {
		return "", 0, false
	}
	m = bytes.TrimSpace(m)
	if len(m) == 0 || string(m) == "null" {
		return "", 0, false
	}
	switch m[0] {
	case '"':
		str, ok := unquote(m)
		if !ok {
			return "", '"', true
		}
		return str, '"', true
	case 't', 'f':
		return string(m), 'b', true
	case '{', '[':
		return string(m), m[0], true
	default:
		return string(m), '0', true
	}
}

// str returns a text field. Numbers are taken as their text, as DRF's
// CharField does; booleans and structures are refused.
func (in *input) str(field string) string {
	s, kind, ok := in.raw(field)
	if !ok {
		return ""
	}
	switch kind {
	case 's', '"', '0':
		return s
	}
	in.fail(field, "Not a valid string.")
	return ""
}

// duration returns the duration field as text for queue.ParseDuration: a
// string ("1d") or a JSON integer (bhr-client's mblock sends numbers).
func (in *input) duration(field string) string {
	s, kind, ok := in.raw(field)
	if !ok {
		return ""
	}
	switch kind {
	case 's', '"', '0':
		return s
	}
	in.fail(field, "Invalid duration")
	return ""
}

// boolean returns a boolean field: JSON true/false, or the spellings
// clients send as text or numbers (True/False/true/false/1/0).
func (in *input) boolean(field string, def bool) bool {
	s, kind, ok := in.raw(field)
	if !ok {
		return def
	}
	switch kind {
	case 's', '"', '0', 'b':
		b, err := queue.ParseBool(field, s)
		if err == nil {
			return b
		}
	}
	in.fail(field, "Must be a valid boolean.")
	return def
}

// strs returns a field that may hold several texts: a JSON array of
// strings, or repeated form values; many is false for a single value
// (then the one text is in the list).
func (in *input) strs(field string) (out []string, many bool) {
	if in.form != nil {
		vs := in.form[field]
		return vs, len(vs) > 1
	}
	s, kind, ok := in.raw(field)
	if !ok {
		return nil, false
	}
	if kind != '[' {
		return []string{in.str(field)}, false
	}
	if err := json.Unmarshal([]byte(s), &out); err != nil {
		in.fail(field, "Expected a list of strings.")
		return nil, true
	}
	return out, true
}

// ids returns a list of positive integer ids: a JSON array of numbers (or
// numeric strings), or repeated (or comma-separated) form values.
func (in *input) ids(field string) []int64 {
	var items []string
	if in.form != nil {
		vs, ok := in.form[field]
		if !ok {
			in.fail(field, "This field is required.")
			return nil
		}
		for _, v := range vs {
			for p := range strings.SplitSeq(v, ",") {
				if p = strings.TrimSpace(p); p != "" {
					items = append(items, p)
				}
			}
		}
	} else {
		m, ok := in.js.get(field)
		if !ok || string(bytes.TrimSpace(m)) == "null" {
			in.fail(field, "This field is required.")
			return nil
		}
		ids, bad, ok := scanIDs(m)
		switch {
		case !ok:
			in.fail(field, "Expected a list of items.")
			return nil
		case bad != "":
			in.fail(field, fmt.Sprintf("Invalid id %q: a positive integer is required.", bad))
			return nil
		}
		return ids
	}
	out := make([]int64, 0, len(items))
	for _, s := range items {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n <= 0 {
			in.fail(field, fmt.Sprintf("Invalid id %q: a positive integer is required.", s))
			return nil
		}
		out = append(out, n)
	}
	return out
}

// scanIDs reads a JSON array of ids (numbers, or numeric strings as
// bhr-client may send) without a value per item: a body of a million ids
// costs their int64s, not a RawMessage and a string each. Repeats collapse
// here (sorted, in place), so that what follows holds each id once. ok is
// false when m is no array; bad is the first item that is no positive
// integer.
func scanIDs(m []byte) (ids []int64, bad string, ok bool) {
	m = bytes.TrimSpace(m)
	if len(m) < 2 || m[0] != '[' || m[len(m)-1] != ']' {
		return nil, "", false
	}
	rest := bytes.TrimSpace(m[1 : len(m)-1])
	for len(rest) > 0 {
		var item []byte
		if i := bytes.IndexByte(rest, ','); i >= 0 {
			item, rest = rest[:i], bytes.TrimSpace(rest[i+1:])
			if len(rest) == 0 {
				return nil, "", false // trailing comma: not JSON
			}
		} else {
			item, rest = rest, nil
		}
		item = bytes.TrimSpace(item)
		if len(item) >= 2 && item[0] == '"' && item[len(item)-1] == '"' {
			item = item[1 : len(item)-1]
		}
		n, err := strconv.ParseInt(string(item), 10, 64)
		if err != nil || n <= 0 {
			return nil, string(item), true
		}
		ids = append(ids, n)
	}
	slices.Sort(ids)
	return slices.Compact(ids), "", true
}

// bodyKind sorts a request body by its Content-Type.
type bodyKind int

const (
	bodyForm bodyKind = iota
	bodyJSON
	bodyMultipart
)

func contentKind(c *gin.Context) (bodyKind, map[string]string, error) {
	ct := c.GetHeader("Content-Type")
	if ct == "" {
		// curl -d and many scripts send forms; an empty body parses as one.
		return bodyForm, nil, nil
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return 0, nil, errDetail(http.StatusUnsupportedMediaType, fmt.Sprintf("Unsupported media type %q in request.", ct))
	}
	switch {
	case mt == "application/json" || strings.HasSuffix(mt, "+json"):
		return bodyJSON, params, nil
	case mt == "application/x-www-form-urlencoded":
		return bodyForm, params, nil
	case mt == "multipart/form-data":
		return bodyMultipart, params, nil
	}
	return 0, nil, errDetail(http.StatusUnsupportedMediaType, fmt.Sprintf("Unsupported media type %q in request.", mt))
}

func jsonParseError(err error) error {
	return errDetail(http.StatusBadRequest, "JSON parse error - "+err.Error())
}

// jsonTypeName names a JSON value's type as DRF (Python) would.
func jsonTypeName(m json.RawMessage) string {
	m = bytes.TrimSpace(m)
	if len(m) == 0 {
		return "nothing"
	}
	switch m[0] {
	case '{':
		return "dict"
	case '[':
		return "list"
	case '"':
		return "str"
	case 't', 'f':
		return "bool"
	case 'n':
		return "NoneType"
	}
	if bytes.ContainsAny(m, ".eE") {
		return "float"
	}
	return "int"
}

// readInput reads a request whose body is one object.
func readInput(c *gin.Context) (*input, error) {
	kind, params, err := contentKind(c)
	if err != nil {
		return nil, err
	}
	body, err := readBody(c)
	if err != nil {
		return nil, err
	}
	switch kind {
	case bodyJSON:
		if len(bytes.TrimSpace(body)) == 0 {
			return &input{}, nil
		}
		var raw json.RawMessage
		if err := json.Unmarshal(body, &raw); err != nil {
			return nil, jsonParseError(err)
		}
		return objectInput(raw)
	case bodyMultipart:
		form, err := parseMultipart(body, params)
		if err != nil {
			return nil, err
		}
		return &input{form: form}, nil
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, errDetail(http.StatusBadRequest, "Malformed form data: "+err.Error())
	}
	return &input{form: form}, nil
}

// objectInput wraps one JSON object.
func objectInput(raw json.RawMessage) (*input, error) {
	var m map[string]json.RawMessage
	if t := jsonTypeName(raw); t != "dict" {
		return nil, errNonField(fmt.Sprintf("Invalid data. Expected a dictionary, but got %s.", t))
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, jsonParseError(err)
	}
	return &input{js: objectFromMap(m)}, nil
}

func parseMultipart(body []byte, params map[string]string) (url.Values, error) {
	r := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	// The body is already in memory and size-limited; keep files there too.
	f, err := r.ReadForm(int64(len(body)) + 1)
	if err != nil {
		return nil, errDetail(http.StatusBadRequest, "Multipart form parse error - "+err.Error())
	}
	defer func() { _ = f.RemoveAll() }()
	return url.Values(f.Value), nil
}

// readList reads a request whose body is a JSON list of objects (mblock).
// Each item is an *input, or an error for an item that is no object.
func readList(c *gin.Context, maxItems int) ([]*input, []error, error) {
	kind, _, err := contentKind(c)
	if err != nil {
		return nil, nil, err
	}
	body, err := readBody(c)
	if err != nil {
		return nil, nil, err
	}
	if kind != bodyJSON {
		return nil, nil, errNonField(`Expected a list of items but got type "dict".`)
	}
	// The usual body, a list of objects, is decoded in one go; anything
	// else item by item, for per-item errors.
	if json.Valid(body) {
		if objs, ok := splitList(body); ok {
			if len(objs) > maxItems {
				return nil, nil, tooManyItems(len(objs), maxItems)
			}
			ins := make([]input, len(objs))
			ptrs := make([]*input, len(objs))
			for i, o := range objs {
				ins[i].js = o
				ptrs[i] = &ins[i]
			}
			return ptrs, make([]error, len(objs)), nil
		}
	}
	var raw json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, nil, jsonParseError(err)
	}
	if t := jsonTypeName(raw); t != "list" {
		return nil, nil, errNonField(fmt.Sprintf("Expected a list of items but got type %q.", t))
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, nil, jsonParseError(err)
	}
	if len(items) > maxItems {
		return nil, nil, tooManyItems(len(items), maxItems)
	}
	ins := make([]*input, len(items))
	errs := make([]error, len(items))
	for i, it := range items {
		ins[i], errs[i] = objectInput(it)
	}
	return ins, errs, nil
}

func tooManyItems(n, limit int) error {
	return errNonField(fmt.Sprintf(
		"Too many items: %d block requests in one mblock; the limit is %d (api.max_mblock_items). Split the list.", n, limit))
}

// query parameters

// queryInt parses an optional non-negative integer query parameter.
func queryInt(c *gin.Context, name string) (int64, error) {
	s := c.Query(name)
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, errField(name, "A valid non-negative integer is required.")
	}
	return n, nil
}

// queryBool parses an optional boolean query parameter.
func queryBool(c *gin.Context, name string) (bool, error) {
	b, err := queue.ParseBool(name, c.Query(name))
	if err != nil {
		return false, errField(name, "Must be a valid boolean.")
	}
	return b, nil
}

// pathID parses a numeric id in the path; anything else is a 404, as in
// DRF, since no such resource exists.
func pathID(c *gin.Context) (int64, error) {
	n, err := strconv.ParseInt(c.Param("id"), 10, 64)
	if err != nil || n <= 0 {
		return 0, errNotFound
	}
	return n, nil
}
