package e2e_test

import (
	"testing"

	"github.com/khadga/khadga/signaling/signalingtest"
)

// recordStreams makes the page keep every stream getUserMedia gives it, so
// that a test can see whether each camera it opened was closed again.
const recordStreams = `
	window.streams = [];
	const gum = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
	navigator.mediaDevices.getUserMedia = async (c) => { const s = await gum(c); streams.push(s); return s; };`

// allEnded is true when every track of every recorded stream has stopped.
const allEnded = `streams.length > 0 && streams.every(s => s.getTracks().every(t => t.readyState === 'ended'))`

// TestCameraClickedTwice: bob clicks "Camera on" twice before the camera
// opens (the permission prompt is slow; he clicks again). He gets one
// camera, and "Camera off" stops it: alice's window of his video closes,
// his page sends nothing, and no camera is left open.
func TestCameraClickedTwice(t *testing.T) {
	_, alice, bob := twoInRoom(t, signalingtest.Options{}, "call")
	bob.do(evalVoid(recordStreams + `
		document.getElementById('camera').click();
		document.getElementById('camera').click();`))
	bob.waitFor("the camera on", `khadgaApp.camera && document.getElementById('camera').textContent === 'Camera off' && !document.getElementById('camera').disabled`)
	waitVideoPlaying(alice, "bob")
	bob.press("camera")
	bob.waitFor("the camera off", `!khadgaApp.camera && document.getElementById('camera').textContent === 'Camera on'`)
	bob.waitFor("every camera closed", allEnded)
	bob.waitFor("nothing sent to alice", `khadgaApp.client.local.size === 0 && `+peerExpr("alice")+`.pc.getSenders().every(s => !s.track)`)
	alice.waitFor("bob's video window gone", `!document.querySelector('.vwin')`)
}

// TestSignOutWhileTheCameraOpens: alice clicks "Camera on" and signs out
// before the camera opened. The camera that opens afterwards is closed at
// once: nobody is signed in to send it to.
func TestSignOutWhileTheCameraOpens(t *testing.T) {
	s := signalingtest.Start(t, signalingtest.Options{})
	alice := openPage(t, s.URL, "alice")
	alice.register("alice")
	alice.do(evalVoid(recordStreams + `
		document.getElementById('camera').click();
		document.getElementById('signout').click();`))
	alice.waitFor("the sign-in form", `!document.getElementById('signin').hidden`)
	alice.waitFor("every camera closed", allEnded)
	if got := eval[string](alice, `document.getElementById('camera').textContent`); got != "Camera on" {
		t.Errorf("the camera button says %q after signing out", got)
	}
}
