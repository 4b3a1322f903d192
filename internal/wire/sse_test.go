package wire

import "testing"

// TestLine checks the three line ends of the event stream format, a CRLF
// kept whole, and a last line without an end.
func TestLine(t *testing.T) {
	b := []byte("a\r\nb\rc\n\nd")
	var got []string
	for pos := 0; pos < len(b); {
		var line []byte
		line, pos = Line(b, pos)
		got = append(got, string(line))
	}
	want := []string{"a", "b", "c", "", "d"}
	if len(got) != len(want) {
		t.Fatalf("lines %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("lines %q, want %q", got, want)
		}
	}
}

// TestField checks how a line splits into a field's name and value.
func TestField(t *testing.T) {
	for _, tc := range []struct{ line, name, value string }{
		{"data: x", "data", "x"},
		{"data:x", "data", "x"},
		{"data:  x", "data", " x"}, // one space only is dropped
		{"data", "data", ""},
		{": comment", "", ""},
		{"event: a:b", "event", "a:b"},
	} {
		n, v := Field([]byte(tc.line))
		if string(n) != tc.name || string(v) != tc.value {
			t.Errorf("Field(%q) = %q, %q; want %q, %q", tc.line, n, v, tc.name, tc.value)
		}
	}
}
