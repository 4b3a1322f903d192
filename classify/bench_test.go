package classify

import (
	"net/http"
	"strings"
	"testing"
)

// corpusShape names the body shape of a corpus case, for benchmarks.
func corpusShape(cc *corpusCase) string {
	b := strings.TrimLeft(cc.Body, "\ufeff \t\r\n")
	switch {
	case b == "":
		return "empty"
	case b[0] == '<':
		return "html"
	case strings.HasPrefix(b, "data:") || strings.HasPrefix(b, "event:") || b[0] == ':':
		return "sse"
	case b[0] == '[':
		return "google_array"
	case b[0] != '{':
		return "text"
	case strings.Contains(b, `"type":"error"`):
		return "anthropic"
	case strings.Contains(b, `"status": "`) || strings.Contains(b, `"status":"`):
		return "google"
	case strings.Contains(b, `"choices"`):
		return "inband_choice"
	case strings.HasPrefix(b, `{"error"`) || strings.HasPrefix(strings.Join(strings.Fields(b), ""), `{"error"`):
		return "openai"
	}
	return "flat"
}

// BenchmarkClassify measures Classify on each body shape of the corpus,
// on the whole corpus, and on the first event of a successful stream.
func BenchmarkClassify(b *testing.B) {
	cases := loadCorpus(b)
	type input struct {
		resp *http.Response
		body []byte
	}
	shapes := map[string][]input{}
	var order []string
	var all []input
	for i := range cases {
		in := input{cases[i].response(), []byte(cases[i].Body)}
		s := corpusShape(&cases[i])
		if _, ok := shapes[s]; !ok {
			order = append(order, s)
		}
		shapes[s] = append(shapes[s], in)
		all = append(all, in)
	}
	shapes["corpus_all"] = all
	order = append(order, "corpus_all")
	shapes["sse_success_chunk"] = []input{{
		resp(200, "Content-Type", "text/event-stream"),
		[]byte(": OPENROUTER PROCESSING\n\ndata: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n"),
	}}
	order = append(order, "sse_success_chunk")
	for _, name := range order {
		ins := shapes[name]
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				in := ins[i%len(ins)]
				Classify(in.resp, in.body)
				i++
			}
		})
	}
}
