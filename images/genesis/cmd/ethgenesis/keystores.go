package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"github.com/google/uuid"
	keystorev4 "github.com/wealdtech/go-eth2-wallet-encryptor-keystorev4"
)

// keystore is an EIP-2335 keystore file (version 4), as eth2-val-tools writes it.
type keystore struct {
	Crypto      map[string]interface{} `json:"crypto"`
	Description string                 `json:"description"`
	Pubkey      string                 `json:"pubkey"`
	Path        string                 `json:"path"`
	UUID        string                 `json:"uuid"`
	Version     uint                   `json:"version"`
}

// prysmAccounts is the plaintext of a Prysm local ("direct") wallet's all-accounts keystore:
// the secret and public keys, in the same order (Prysm's validator/keymanager/local format;
// encoding/json writes the byte slices as base64, which is how Prysm reads them back).
type prysmAccounts struct {
	PrivateKeys [][]byte `json:"private_keys"`
	PublicKeys  [][]byte `json:"public_keys"`
}

// prysmAccountsFile is the encrypted all-accounts keystore of a Prysm local wallet.
type prysmAccountsFile struct {
	Crypto  map[string]interface{} `json:"crypto"`
	ID      string                 `json:"uuid"`
	Version uint                   `json:"version"`
	Name    string                 `json:"name"`
}

// runKeystores is eth2-val-tools' `keystores`: for keys [min, max) of the mnemonic it writes
//
//	<out>/keys/0x<pubkey>/voting-keystore.json   EIP-2335 keystore of the signing key
//	<out>/secrets/0x<pubkey>                     its password (random, hex)
//	<out>/pubkeys.json                           the public keys, in key order
//	<out>/prysm/direct/accounts/all-accounts.keystore.json
//	                                             a Prysm local wallet of the same keys, encrypted
//	                                             with --prysm-pass (open it with --wallet-dir <out>/prysm)
//
// --insecure encrypts with PBKDF2 instead of scrypt: equally valid keystores, much cheaper to
// write and to open (fine for a testnet).
func runKeystores(args []string) error {
	fs := flag.NewFlagSet("keystores", flag.ContinueOnError)
	mnemonic := fs.String("source-mnemonic", "", "mnemonic the keys are derived from (m/12381/3600/i/0/0)")
	minIdx := fs.Uint64("source-min", 0, "first key index (inclusive)")
	maxIdx := fs.Uint64("source-max", 0, "end key index (exclusive)")
	outLoc := fs.String("out-loc", "assigned_data", "output directory; must not exist")
	prysmPass := fs.String("prysm-pass", "", "password of the Prysm wallet (no Prysm wallet when empty)")
	insecure := fs.Bool("insecure", false, "encrypt with PBKDF2 instead of scrypt (cheap, for testnets)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *maxIdx <= *minIdx {
		return fmt.Errorf("--source-max (%d) must be above --source-min (%d)", *maxIdx, *minIdx)
	}
	if _, err := os.Stat(*outLoc); err == nil {
		return fmt.Errorf("output directory %s already exists", *outLoc)
	}
	seed, err := seedFromMnemonic(*mnemonic)
	if err != nil {
		return err
	}
	newEncryptor := func() *keystorev4.Encryptor {
		if *insecure {
			return keystorev4.New(keystorev4.WithCipher("pbkdf2"))
		}
		return keystorev4.New()
	}

	n := int(*maxIdx - *minIdx)
	type result struct {
		pub, priv []byte
		ks        []byte
		pass      string
		err       error
	}
	results := make([]result, n)
	work := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < runtime.NumCPU(); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			enc := newEncryptor()
			for j := range work {
				results[j] = func() result {
					idx := *minIdx + uint64(j)
					path := signingKeyPath(idx)
					sk, err := blsKey(seed, path)
					if err != nil {
						return result{err: err}
					}
					pass, err := randomHex(32)
					if err != nil {
						return result{err: err}
					}
					fields, err := enc.Encrypt(sk.Marshal(), pass)
					if err != nil {
						return result{err: err}
					}
					id, err := uuid.NewRandom()
					if err != nil {
						return result{err: err}
					}
					pub := sk.PublicKey().Marshal()
					ks, err := json.MarshalIndent(keystore{Crypto: fields, Pubkey: hex.EncodeToString(pub),
						Path: path, UUID: id.String(), Version: enc.Version()}, "", "  ")
					return result{pub: pub, priv: sk.Marshal(), ks: ks, pass: pass, err: err}
				}()
			}
		}()
	}
	for j := 0; j < n; j++ {
		work <- j
	}
	close(work)
	wg.Wait()

	keysDir, secretsDir := filepath.Join(*outLoc, "keys"), filepath.Join(*outLoc, "secrets")
	for _, d := range []string{keysDir, secretsDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	accounts := prysmAccounts{}
	pubkeys := make([]string, 0, n)
	for j, r := range results {
		if r.err != nil {
			return fmt.Errorf("key %d: %w", *minIdx+uint64(j), r.err)
		}
		name := "0x" + hex.EncodeToString(r.pub)
		if err := os.MkdirAll(filepath.Join(keysDir, name), 0o700); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(keysDir, name, "voting-keystore.json"), r.ks, 0o600); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(secretsDir, name), []byte(r.pass), 0o600); err != nil {
			return err
		}
		accounts.PrivateKeys = append(accounts.PrivateKeys, r.priv)
		accounts.PublicKeys = append(accounts.PublicKeys, r.pub)
		pubkeys = append(pubkeys, name)
	}
	pk, err := json.MarshalIndent(pubkeys, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(*outLoc, "pubkeys.json"), pk, 0o600); err != nil {
		return err
	}

	if *prysmPass != "" {
		if err := writePrysmWallet(filepath.Join(*outLoc, "prysm"), accounts, *prysmPass, newEncryptor()); err != nil {
			return fmt.Errorf("prysm wallet: %w", err)
		}
	}
	fmt.Printf("%d keystores (keys %d..%d) in %s\n", n, *minIdx, *maxIdx-1, *outLoc)
	return nil
}

// writePrysmWallet writes a Prysm local wallet holding the accounts: the keymanager kind is the
// directory name ("direct"), the keys are in direct/accounts/all-accounts.keystore.json.
func writePrysmWallet(dir string, accounts prysmAccounts, password string, enc *keystorev4.Encryptor) error {
	plain, err := json.MarshalIndent(accounts, "", "\t")
	if err != nil {
		return err
	}
	fields, err := enc.Encrypt(plain, password)
	if err != nil {
		return err
	}
	id, err := uuid.NewRandom()
	if err != nil {
		return err
	}
	out, err := json.Marshal(prysmAccountsFile{Crypto: fields, ID: id.String(), Version: enc.Version(), Name: enc.Name()})
	if err != nil {
		return err
	}
	accDir := filepath.Join(dir, "direct", "accounts")
	if err := os.MkdirAll(accDir, 0o700); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(accDir, "all-accounts.keystore.json"), out, 0o600)
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}
