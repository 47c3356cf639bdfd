package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/khadga/khadga/signaling/admin"
	"github.com/khadga/khadga/signaling/store"
)

// The TURN REST secrets kept in the store (turnSecretName), when no
// --turn-secret or --turn-secret-file is given: one per line, the first
// mints and every one is accepted. A store from before rotation holds one
// secret without a newline, which reads the same. In a cluster every
// signaling node and every `khadga turn --nats` node watches the record,
// so `khadga turn-secret rotate --nats ...` reaches all of them at once.

// maxStoredTURNSecrets is how many secrets a rotation keeps: the new one,
// and the one before it, which keeps working for the credentials it
// minted until the next rotation.
const maxStoredTURNSecrets = 2

// parseTURNSecrets splits the stored value into its secrets.
func parseTURNSecrets(v []byte) [][]byte {
	var out [][]byte
	for _, line := range bytes.Split(v, []byte("\n")) {
		if line = bytes.TrimSpace(line); len(line) > 0 {
			out = append(out, line)
		}
	}
	return out
}

// storedTURNSecrets returns the secrets kept in st, generating the first
// one if there is none.
func storedTURNSecrets(st store.Backend) ([][]byte, error) {
	v, err := st.Secret(turnSecretName, newTURNSecret)
	if err != nil {
		return nil, fmt.Errorf("TURN secret: %w", err)
	}
	secrets := parseTURNSecrets(v)
	if len(secrets) == 0 {
		return nil, fmt.Errorf("TURN secret: the stored value %q holds no secret", turnSecretName)
	}
	return secrets, nil
}

// rotateTURNSecret puts a new secret in front of the stored ones, keeping
// the current one behind it, in one atomic step, and returns how many
// secrets are kept now.
func rotateTURNSecret(st store.Backend) (int, error) {
	fresh, err := newTURNSecret()
	if err != nil {
		return 0, err
	}
	v, err := st.UpdateSecret(turnSecretName, func(old []byte) ([]byte, error) {
		kept := append([][]byte{fresh}, parseTURNSecrets(old)...)
		return bytes.Join(kept[:min(len(kept), maxStoredTURNSecrets)], []byte("\n")), nil
	})
	if err != nil {
		return 0, err
	}
	return len(parseTURNSecrets(v)), nil
}

// watchStoredSecrets hands the store's TURN secrets to set whenever a node
// changes them (with bbolt, only the server's own process could, and it
// is stopped for a rotation); stop ends it. set refuses with
// errSecretsFromFile once --turn-secret-file gives the secrets.
func watchStoredSecrets(st store.Backend, set func([][]byte) error, current [][]byte, log *slog.Logger) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	sum := hashSecrets(current)
	go func() {
		defer close(done)
		st.WatchSecret(ctx, turnSecretName, func(v []byte) {
			secrets := parseTURNSecrets(v)
			if hashSecrets(secrets) == sum {
				return
			}
			err := set(secrets)
			if errors.Is(err, errSecretsFromFile) {
				return
			}
			if err != nil {
				log.Error("TURN secrets from the cluster not applied; the ones in use stay", slog.Any("err", err))
				return
			}
			sum = hashSecrets(secrets)
			log.Info("TURN secrets reloaded", slog.String("why", "changed in the cluster"), slog.Int("secrets", len(secrets)))
		})
	}()
	return func() { cancel(); <-done }
}

var turnSecretCommand = command("khadga turn-secret", "khadga turn-secret rotate [--nats URL...]",
	"Rotate the TURN REST secret kept in the store (used when no --turn-secret or --turn-secret-file is given): "+
		"a new secret mints from now on, and the previous one keeps working until the next rotation, so rotate no "+
		"more often than --turn-ttl. With --nats every node of the cluster takes it at once; without, the store file of "+
		"a stopped server changes and the server takes it when it starts.",
	"khadga turn-secret rotate --nats nats://nats-0:4222,nats://nats-1:4222")

func runTurnSecret(ctx context.Context, args []string) error {
	var a adminConfig
	rest, err := load(&a, turnSecretCommand, args)
	if err != nil {
		return err
	}
	if len(rest) != 1 || rest[0] != "rotate" {
		return errors.New("turn-secret: want the subcommand rotate (khadga turn-secret --help)")
	}
	if !a.NATS.enabled() {
		// The file of a stopped server: a running one holds it (and would
		// keep minting with the secret it read at start), and a mistyped
		// --data would get a new store with a secret that no server reads.
		if _, err := admin.Dial(a.socket()); err == nil {
			return errors.New("turn-secret: a server answers on the admin socket " + a.socket() +
				": stop it first (it reads the secret when it starts), or, for a cluster node, rotate with --nats")
		}
		if err := mustExist(a.storePath()); err != nil {
			return fmt.Errorf("turn-secret: %w", err)
		}
	}
	st, closeFn, err := a.openStore(ctx)
	if err != nil {
		return err
	}
	defer closeFn()
	n, err := rotateTURNSecret(st)
	if err != nil {
		return fmt.Errorf("turn-secret: %w", err)
	}
	fmt.Fprintf(os.Stderr, "TURN secret rotated; %d secrets kept (the new one mints)\n", n)
	return nil
}
