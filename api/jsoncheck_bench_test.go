package api

import "testing"

func BenchmarkCheckStructure(b *testing.B) {
	body := []byte(`{"token":"demo-vpn","action":{"type":"checkout","amount":900,"currency":"USD","items":[{"sku":"a","qty":2}]},"external_ids":{"accountId":"1234567890"}}`)
	for _, bc := range []struct {
		name string
		f    func([]byte) error
	}{{"scanner", checkStructure}, {"reference", checkStructureReference}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := bc.f(body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
