package e2e_test

import (
	"testing"
)

// TestRenegotiationRequestsBounded: a polite member that asks the
// impolite page for transceivers again and again (each request within
// the limit of 8 a kind) gets at most 8 of each kind, and the page never
// sends a signal over the server's message limit (64 KiB): the server
// would close its socket (1009), and the page, resumed, would send its
// unanswered offer again and be closed again, for ever.
func TestRenegotiationRequestsBounded(t *testing.T) {
	_, alice, bob := twoInRoom(t, resumable, "room")
	// The impolite side is the page whose peer id sorts last: it honours
	// renegotiation requests.
	polite, impolite := alice, bob
	if eval[string](alice, `khadgaApp.client.self.peer`) > eval[string](bob, `khadgaApp.client.self.peer`) {
		polite, impolite = bob, alice
	}
	impolite.do(evalVoid(`window.drops = []; window.warnings = [];
		khadgaApp.client.on('disconnected', d => drops.push(d.code));
		khadgaApp.client.on('warning', w => warnings.push(w.message))`))
	to := eval[string](impolite, `khadgaApp.client.self.peer`)
	polite.do(evalVoid(`for (let i = 0; i < 20; i++) khadgaApp.client.write({type: 'signal', to: ` + js(to) + `, room: 'room', data: {renegotiate: {video: 8, audio: 8}}})`))
	pc := peerExpr(polite.name) + `.pc`
	impolite.waitFor("the requested transceivers negotiated, or a dropped socket", `drops.length > 0 || (`+pc+`.signalingState === 'stable' &&
		`+pc+`.getTransceivers().length > 0 && `+pc+`.getTransceivers().every(t => t.currentDirection))`)
	if drops := eval[[]int](impolite, `drops`); len(drops) > 0 {
		t.Fatalf("the page lost its signaling socket (codes %v) with %d transceivers", drops, eval[int](impolite, pc+`.getTransceivers().length`))
	}
	for _, kind := range []string{"video", "audio"} {
		if n := eval[int](impolite, pc+`.getTransceivers().filter(t => t.receiver.track.kind === '`+kind+`').length`); n != 8 {
			t.Errorf("%d %s transceivers after 20 requests for 8, want 8", n, kind)
		}
	}

	// A signal over the limit (here a made-up description) is not sent:
	// the page warns and keeps its socket.
	impolite.do(evalVoid(peerExpr(polite.name) + `.signal({description: {type: 'offer', sdp: 'v=0\r\n' + 'a=x-filler\r\n'.repeat(8000)}})`))
	impolite.waitFor("a warning", `warnings.some(w => w.includes('limit'))`)
	impolite.say("still here")
	polite.waitMessage(impolite.name, "still here")
	if drops := eval[[]int](impolite, `drops`); len(drops) > 0 {
		t.Fatalf("the page lost its signaling socket (codes %v)", drops)
	}
	if got := impolite.ws.containing("x-filler"); len(got) > 0 {
		t.Errorf("a signal of %d bytes went to the server", len(got[0]))
	}
}
