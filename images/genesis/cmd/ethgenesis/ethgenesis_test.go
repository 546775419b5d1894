package main

import (
	"encoding/hex"
	"math/big"
	"strings"
	"testing"

	"github.com/ethereum/go-ethereum/crypto"
	util "github.com/wealdtech/go-eth2-util"
)

const chartMnemonic = "giant issue aisle success illegal bike spike question tent bar rely arctic volcano long crawl hungry vocal artwork sniff fantasy very lucky have athlete"

func lookup(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestExpand(t *testing.T) {
	env := lookup(map[string]string{"A": "1", "EMPTY": "", "M": "w1 w2"})
	for in, want := range map[string]string{
		"x: ${A}":                   "x: 1",
		"x: ${B:-7}":                "x: 7",
		"x: ${EMPTY:-d}":            "x: d",
		"x: ${B:-${A}}":             "x: 1",
		"x: ${B:-{}}":               "x: {}",
		"m: \"${M}\" $ and $A stay": "m: \"w1 w2\" $ and $A stay",
		"x: ${EMPTY}.":              "x: .",
	} {
		got, err := expand(in, env)
		if err != nil || got != want {
			t.Errorf("expand(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"${MISSING}", "${A", "${1X}"} {
		if _, err := expand(bad, env); err == nil {
			t.Errorf("expand(%q): no error", bad)
		} else if bad == "${MISSING}" && !strings.Contains(err.Error(), "MISSING") {
			t.Errorf("expand(%q): the error does not name the key: %v", bad, err)
		}
	}
}

// EIP-2333's first test case: the master key and child 0 of its seed.
func TestEIP2333Vector(t *testing.T) {
	seed, _ := hex.DecodeString("c55257c360c07c72029aebc1b53c05ed0362ada38ead3e3e9efa3708e53495531f09a6987599d18264c1e1c92f2cf141630c7a3c4ab7c81b2f001698e7463b04")
	master, _ := new(big.Int).SetString("6083874454709270928345386274498605044986640685124978867557563392430687146096", 10)
	child, _ := new(big.Int).SetString("20397789859736650942317412262472558107875392172444076792671091975210932703118", 10)
	m, err := util.DeriveMasterSK(seed)
	if err != nil || m.Cmp(master) != 0 {
		t.Fatalf("master %v, %v", m, err)
	}
	sk, err := blsKey(seed, "m/0")
	if err != nil {
		t.Fatal(err)
	}
	if got := new(big.Int).SetBytes(sk.Marshal()); got.Cmp(child) != 0 {
		t.Fatalf("m/0 = %v, want %v", got, child)
	}
}

// The chart's default mnemonic gives Kurtosis's well-known validator 0 and first funded account.
func TestChartMnemonicKeys(t *testing.T) {
	seed, err := seedFromMnemonic(chartMnemonic)
	if err != nil {
		t.Fatal(err)
	}
	sk, err := blsKey(seed, signingKeyPath(0))
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(sk.PublicKey().Marshal()); got != "aaf6c1251e73fb600624937760fef218aace5b253bf068ed45398aeb29d821e4d2899343ddcbbe37cb3f6cf500dff26c" {
		t.Errorf("validator 0: %s", got)
	}
	key, err := secpKey(seed, "m/44'/60'/0'/0/0")
	if err != nil {
		t.Fatal(err)
	}
	if got := crypto.PubkeyToAddress(key.PublicKey).Hex(); got != "0x8943545177806ED17B9F23F0a21ee5948eCaa776" {
		t.Errorf("account 0: %s", got)
	}
	if _, err := seedFromMnemonic("giant issue aisle"); err == nil {
		t.Error("a bad mnemonic was accepted")
	}
}

func TestParseAmount(t *testing.T) {
	for in, want := range map[string]string{"1000000000ETH": "1000000000000000000000000000", "5gwei": "5000000000", "7": "7", "0x10": "16"} {
		got, err := parseAmount(in)
		if err != nil || got.String() != want {
			t.Errorf("parseAmount(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
}
