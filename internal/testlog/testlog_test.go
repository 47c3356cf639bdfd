package testlog

import (
	"log/slog"
	"testing"
)

func TestSilentAfterTheTest(t *testing.T) {
	var log *slog.Logger
	t.Run("inner", func(t *testing.T) {
		log = New(t, slog.LevelInfo)
		log.Info("during the test")
	})
	log.Info("after the test") // would panic if it reached t.Log
}
