// Package e2e holds khadga's browser tests: a real signaling server (and,
// where a test needs it, the embedded TURN server) on 127.0.0.1, and real
// headless Chromium tabs running the web app and the JavaScript SDK that the
// server embeds, driven from Go with chromedp. One Chromium process serves
// the whole test binary (internal/chromium); every simulated user gets a tab
// in its own browser context, so two users share no cookies or storage.
//
// What the tests prove (every page also fails its test on any
// Content-Security-Policy violation):
//
//   - TestChatBetweenBrowsers: two people register and sign in through the
//     page, see each other in the presence column, join a room and chat both
//     ways. The text arrives on the RTCDataChannel, and no WebSocket frame of
//     either page ever carries it: the server relays only the handshake.
//     Leaving the room and signing out show up live on the other page.
//   - TestVideoBetweenBrowsers: both turn on the (fake) camera and each page
//     plays the other's video (videoWidth > 0, framesDecoded growing). It
//     saves a screenshot of the call (see Artifacts).
//   - TestBrowserAndGoClient: a browser and a Go peer (package client) chat
//     both ways, the Go peer receives the browser's VP8 track (and decodes
//     a key frame), and the Go peer's test pattern plays in the page.
//   - TestForcedRelay: with the page's "relay only" setting
//     (iceTransportPolicy "relay"), two browsers connect through the
//     embedded TURN server, and both badges say "relayed". After a resume,
//     the fresh TURN credentials of the welcome restart ICE on the relayed
//     connection, and chat goes on.
//   - TestResumeAfterDroppedSocket: the page's socket is closed under it; the
//     app shows its banner, resumes the same session, and chat goes on.
//   - TestFilesBetweenBrowsers: alice sends bob a 20 MiB file through the
//     file picker (the browser hands its dialog to the test) and a small one
//     dragged onto bob's row; bob accepts, both pages show the progress to
//     the end and the verified SHA-256, and the file bob can save hashes
//     (with WebCrypto) to the sender's digest. A declined offer, an offer
//     withdrawn by the sender and a transfer the receiver cancels halfway
//     each end the same way on both pages.
//   - TestFilesBrowserAndKhadgaPeer: the page and the khadga-peer binary
//     exchange 20 MiB files both ways (recv saves the page's file byte for
//     byte; the page verifies send's), both showing progress; a transfer
//     the page cancels makes khadga-peer send exit 6 with the page's reason.
//   - TestFilesFromAStalledSender: a Go peer whose file the page accepted
//     sends half and then nothing; the page's transfer fails once the
//     SDK's (shortened) fileStallTimeout passes, and the sender hears why.
//   - TestSDKFromAnotherOrigin: a site served on a second 127.0.0.1
//     listener (another origin) and listed with --allow-origin imports
//     /sdk/khadga.js from the server, signs in, mints a ticket, connects,
//     joins and chats with a person in the app; a site on an unlisted
//     origin can neither import the SDK nor call the API.
//   - TestChatStaysAcrossReconnects: the chat stays on screen when the
//     server restarts (new sessions) and when a page reloads (it signs in,
//     rejoins its room and puts the kept log back, no message twice); chat
//     goes on after each, and signing out forgets the kept log.
//   - TestPeerFailureNotice: two relay-only pages connected through TURN
//     over TCP lose the relay when the TURN server stops; Chrome fails the
//     connection, the SDK reports peer-failed, and both pages say the
//     connection to the other was lost (no firewall hint).
//   - TestRecorderNeedsOptIn: a recorder-role peer joins; the page marks it
//     as recording and sends it no track until "Share with recorder" is on.
//   - TestSessionLifecycle: tokens refresh without a reload, a reload signs
//     in again from sessionStorage, no token appears in any URL the page
//     requests, every control has an accessible name, the layout fits a
//     phone-width screen, and signing out revokes the refresh token.
//   - TestReloadWhileTheServerIsBusy, TestReloadWhileTheSocketCannotOpen:
//     a reload whose refresh is answered 429 or 503, or whose socket does
//     not open (a ticket answered 503, an upgrade the server refuses),
//     keeps the sign-in and tries again until it is back in its room; a
//     sign-in with the form meanwhile wins (the restored one signs itself
//     out), and a refused refresh (401) signs the tab out.
//   - TestReloadRefreshAnsweredAfterTheForm: a reload's refresh answered
//     only after the person signed in with the form is signed out at once;
//     the form's sign-in stays the only one, connected and kept.
//   - TestSDKExamplePage: the documented example page, built on the SDK
//     alone, chats with a person using the app.
//   - TestPasswordChange: the app refuses a wrong current password and a
//     mistyped repeat, changes the password while the session goes on,
//     and then only the new password signs in.
//   - TestResendVerification: after a link expired unopened, signing in
//     offers to send it again; with the mistyped address corrected, the
//     new link arrives there, confirms the account and signing in works.
//   - TestTwoFactorSignIn: turning on TOTP in the app (QR code, key,
//     confirmation, recovery codes), then a sign-in that asks for the code,
//     refuses a wrong one and accepts the right one.
//   - TestInviteLink: a room's "Invite link" button makes its user the
//     owner and shows a link; someone who knows only the room's name is
//     refused; a person who opens the link registers, lands in the room and
//     chats, and is back in it after a reload. The token stays in the
//     fragment: it leaves the address bar, and no request URL carries it.
//   - TestReloadAndCloseLeaveNoGhost: a page reloaded or closed leaves its
//     session at once: the other page shows one of its user online and in
//     the room after a reload (the reloaded page does not list itself),
//     and none after the tab closed, well within the resume window.
//   - TestLeaveWhileDisconnected: Leave pressed while the socket is down
//     takes effect on the resume: the other page sees the person leave,
//     and a newcomer to the room gets no connection to them (nor their
//     camera).
//   - TestSignOutLeavesNothingForTheNext: after a sign-out, the next person
//     on the tab sees no room error of the last one, and the "Share with
//     recorder" box is clear, as their client is; the form refuses the
//     room names "." and ".." itself.
//   - TestCameraClickedTwice, TestSignOutWhileTheCameraOpens: "Camera on"
//     clicked twice opens one camera, which "Camera off" closes (the other
//     page's window goes, nothing is sent); a camera that opens after a
//     sign-out is closed at once.
//   - TestSignedOutElsewhereSaysWhy: a tab signed out by a password change
//     in another tab says that the password was changed, not that the
//     session expired.
//   - TestLogoutOthersInBrowser: "Sign out other devices" signs the other
//     tab out, saying why, and the first tab goes on.
//   - TestMessageTooLong: a message over 16 KiB of UTF-8 (8000 emoji fit
//     the box) is refused in words, with its size and the limit, and stays
//     in the box; the other side gets nothing.
//   - TestSignInWhileTheServerIsDown: signing in with the server stopped
//     says that the server cannot be reached, not just "Failed to fetch".
//   - TestSignInWhenTheSocketCannotOpen: a sign-in whose WebSocket does not
//     open says so in words (the live connection), and what to check.
//   - TestInviteOfferNotTakenLater: an invite offered to a signed-in tab
//     (a fragment change) and not taken is not joined by a reload or by
//     the next sign-in.
//   - TestLongUsernameFits: a 32-character username stays inside the
//     presence column, and on a 375px phone the page is no wider than the
//     screen and "Sign out" stays on it.
//   - TestVideoWindowFollowsTheScreen: a video window opened on a wide
//     screen moves (and shrinks) onto a screen narrowed to 375px.
//   - TestLeaveKeepsKeyboardFocus, TestSendWithoutARoomSaysSo: Leave
//     pressed from the keyboard leaves focus in the room name box; a
//     message sent in no room says to join one, and stays in the box.
//   - TestSkipLinkOnlyWhenSignedIn: the first Tab on the sign-in form
//     reaches the username box; signed in, "Skip to chat" reaches the
//     message box.
//   - TestInviteByNavigationIsOffered: an invite link loaded in a
//     signed-in tab by another page (a full navigation) is offered, not
//     joined, by the sign-in the tab restores.
//   - TestPresenceCountsTheUnlisted: with more online than the server
//     lists, the presence column counts everyone and says how many more.
//   - TestReadableAndFocusable: the sign-in form, the app (a room, chat,
//     an invite link, a video window, the security forms open) and the
//     reconnecting banner meet WCAG AA contrast in the light and the
//     dark colour scheme (emulated), computed from the page's computed
//     colours: text 4.5:1 (3:1 large), text fields and buttons 3:1
//     against their card; and Tab through every control shows a focus
//     outline of 3:1 that no ancestor clips.
//   - TestFilesOnAPhone: on a 375x667 phone, every screen of a file
//     transfer (offer, waiting, progress, done, declined, failed and
//     cancelled) fits the screen, its controls are at least 24x24 px, it
//     meets the same contrast, and its controls show keyboard focus.
//   - TestInviteCopySaysCopied: the invite link's Copy button says
//     "Copied" for a moment, and a status message tells screen readers.
//   - TestServerErrorsReadAsSentences: the server's "invalid username or
//     password" shows as a sentence under the sign-in form.
//   - TestCameraOffAfterReloadSaysSo: a page reloaded with the camera on
//     comes back with it off, and a note by the camera button says so
//     until it is on again.
//   - TestTwoFactorSetupLabelsShow: the two-factor setup's password and
//     code boxes have labels on screen, not only placeholders.
//
// Artifacts (screenshots) go to $KHADGA_ARTIFACTS when set, else to the
// test's temporary directory. When Chromium is missing the tests skip, or
// fail when KHADGA_REQUIRE_CHROMIUM=1, which the project's CI sets
// (.ci/run).
package e2e
