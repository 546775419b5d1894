package main

import (
	"crypto/ecdsa"
	"crypto/hmac"
	"crypto/sha512"
	"encoding/binary"
	"fmt"
	"math/big"
	"strconv"
	"strings"

	"github.com/OffchainLabs/prysm/v6/beacon-chain/core/signing"
	"github.com/OffchainLabs/prysm/v6/config/params"
	"github.com/OffchainLabs/prysm/v6/crypto/bls"
	"github.com/OffchainLabs/prysm/v6/crypto/hash"
	ethpb "github.com/OffchainLabs/prysm/v6/proto/prysm/v1alpha1"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/tyler-smith/go-bip39"
	util "github.com/wealdtech/go-eth2-util"
)

// Key paths of EIP-2334 (as eth2-val-tools and the genesis generator use them): the signing key
// of validator i and its BLS withdrawal key.
func signingKeyPath(i uint64) string    { return fmt.Sprintf("m/12381/3600/%d/0/0", i) }
func withdrawalKeyPath(i uint64) string { return fmt.Sprintf("m/12381/3600/%d/0", i) }

// seedFromMnemonic is BIP-39's seed of a mnemonic with an empty passphrase; the words are
// checked against the word list and the checksum.
func seedFromMnemonic(mnemonic string) ([]byte, error) {
	m := strings.Join(strings.Fields(mnemonic), " ")
	if m == "" {
		return nil, fmt.Errorf("empty mnemonic")
	}
	seed, err := bip39.NewSeedWithErrorChecking(m, "")
	if err != nil {
		return nil, fmt.Errorf("mnemonic: %w", err)
	}
	return seed, nil
}

func parsePath(path string) ([]string, error) {
	parts := strings.Split(strings.TrimSpace(path), "/")
	if len(parts) < 2 || parts[0] != "m" {
		return nil, fmt.Errorf("bad derivation path %q", path)
	}
	return parts[1:], nil
}

// blsKey derives the BLS secret key at an EIP-2334 path with EIP-2333's tree KDF.
func blsKey(seed []byte, path string) (bls.SecretKey, error) {
	parts, err := parsePath(path)
	if err != nil {
		return nil, err
	}
	sk, err := util.DeriveMasterSK(seed)
	if err != nil {
		return nil, err
	}
	for _, p := range parts {
		i, err := strconv.ParseUint(p, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("bad index %q in %q (EIP-2334 paths have no hardened indexes)", p, path)
		}
		if sk, err = util.DeriveChildSK(sk, uint32(i)); err != nil {
			return nil, err
		}
	}
	b := make([]byte, 32)
	sk.FillBytes(b)
	return bls.SecretKeyFromBytes(b)
}

// secpKey derives the secp256k1 key at a BIP-32 path (such as m/44'/60'/0'/0/0, the first
// account of a wallet).
func secpKey(seed []byte, path string) (*ecdsa.PrivateKey, error) {
	parts, err := parsePath(path)
	if err != nil {
		return nil, err
	}
	n := crypto.S256().Params().N
	mac := hmac.New(sha512.New, []byte("Bitcoin seed"))
	mac.Write(seed)
	I := mac.Sum(nil)
	k, chain := new(big.Int).SetBytes(I[:32]), I[32:]
	for _, p := range parts {
		hardened := strings.HasSuffix(p, "'") || strings.HasSuffix(p, "h")
		i, err := strconv.ParseUint(strings.TrimRight(p, "'h"), 10, 31)
		if err != nil {
			return nil, fmt.Errorf("bad index %q in %q", p, path)
		}
		var data []byte
		if hardened {
			i |= 1 << 31
			data = append([]byte{0}, common.LeftPadBytes(k.Bytes(), 32)...)
		} else {
			parent, err := crypto.ToECDSA(common.LeftPadBytes(k.Bytes(), 32))
			if err != nil {
				return nil, err
			}
			data = crypto.CompressPubkey(&parent.PublicKey)
		}
		data = binary.BigEndian.AppendUint32(data, uint32(i))
		mac := hmac.New(sha512.New, chain)
		mac.Write(data)
		I := mac.Sum(nil)
		il := new(big.Int).SetBytes(I[:32])
		if il.Cmp(n) >= 0 {
			return nil, fmt.Errorf("%s: invalid child key (try the next index)", path)
		}
		k = il.Add(il, k)
		k.Mod(k, n)
		if k.Sign() == 0 {
			return nil, fmt.Errorf("%s: invalid child key (try the next index)", path)
		}
		chain = I[32:]
	}
	return crypto.ToECDSA(common.LeftPadBytes(k.Bytes(), 32))
}

// withdrawalCredentials of validator i: 0x00 (BLS: the hash of its withdrawal key's public
// key) or 0x01/0x02 (an execution address).
func withdrawalCredentials(seed []byte, i uint64, prefix, address string) ([]byte, error) {
	switch strings.ToLower(strings.TrimSpace(prefix)) {
	case "", "0x00", "0":
		wk, err := blsKey(seed, withdrawalKeyPath(i))
		if err != nil {
			return nil, err
		}
		h := hash.Hash(wk.PublicKey().Marshal())
		h[0] = params.BeaconConfig().BLSWithdrawalPrefixByte
		return h[:], nil
	case "0x01", "1", "0x02", "2":
		if !common.IsHexAddress(address) {
			return nil, fmt.Errorf("withdrawal type %s needs an execution address, got %q", prefix, address)
		}
		b, _ := strconv.ParseUint(strings.TrimPrefix(strings.ToLower(prefix), "0x"), 16, 8)
		creds := make([]byte, 12, 32)
		creds[0] = byte(b)
		return append(creds, common.HexToAddress(address).Bytes()...), nil
	default:
		return nil, fmt.Errorf("unknown withdrawal type %q (0x00, 0x01 or 0x02)", prefix)
	}
}

// depositData is a signed deposit of amount Gwei for sk (signed over the deposit domain of the
// active config's genesis fork version, as the deposit contract's consumers verify it), and
// its hash tree root.
func depositData(sk bls.SecretKey, creds []byte, amount uint64) (*ethpb.Deposit_Data, []byte, error) {
	cfg := params.BeaconConfig()
	msg := &ethpb.DepositMessage{
		PublicKey:             sk.PublicKey().Marshal(),
		WithdrawalCredentials: creds,
		Amount:                amount,
	}
	msgRoot, err := msg.HashTreeRoot()
	if err != nil {
		return nil, nil, err
	}
	domain, err := signing.ComputeDomain(cfg.DomainDeposit, cfg.GenesisForkVersion, cfg.ZeroHash[:])
	if err != nil {
		return nil, nil, err
	}
	signingRoot, err := (&ethpb.SigningData{ObjectRoot: msgRoot[:], Domain: domain}).HashTreeRoot()
	if err != nil {
		return nil, nil, err
	}
	dd := &ethpb.Deposit_Data{
		PublicKey:             msg.PublicKey,
		WithdrawalCredentials: creds,
		Amount:                amount,
		Signature:             sk.Sign(signingRoot[:]).Marshal(),
	}
	root, err := dd.HashTreeRoot()
	if err != nil {
		return nil, nil, err
	}
	return dd, root[:], nil
}
