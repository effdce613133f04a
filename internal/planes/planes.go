// Package planes builds the enforcement planes into bhrd: importing it
// registers each of them (see pkg/plane). A new plane is one line here.
package planes

import (
	_ "github.com/bhrd/bhrd/pkg/plane/bgpplane"       // type bgp: the embedded BGP speaker
	_ "github.com/bhrd/bhrd/pkg/plane/dnsblplane"     // type dnsbl: a DNSBL zone with Http:BL answers
	_ "github.com/bhrd/bhrd/pkg/plane/nullrouteplane" // type nullroute: kernel blackhole routes
)
