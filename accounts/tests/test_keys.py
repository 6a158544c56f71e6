import hashlib

from accounts import keys


def test_generate_gives_a_fresh_prefix_and_secret_each_time():
    first, second = keys.generate(), keys.generate()

    assert first[0].startswith(keys.KEY_PREFIX)
    assert first[0] != second[0]
    assert first[1] != second[1]
    assert len(first[1]) >= 40  # 32 random bytes, urlsafe base64


def test_join_and_split_round_trip():
    prefix, secret = keys.generate()

    assert keys.split(keys.join(prefix, secret)) == (prefix, secret)


def test_split_rejects_keys_not_shaped_like_ours():
    assert keys.split("") is None
    assert keys.split("no-dot-at-all") is None
    assert keys.split("llmk_abc.") is None  # no secret
    assert keys.split("other_abc.secret") is None  # foreign prefix
    assert keys.split("llmk_" + "a" * 40 + ".secret") is None  # prefix too long


def test_hash_secret_is_sha256_hex():
    assert keys.hash_secret("s3cret") == hashlib.sha256(b"s3cret").hexdigest()


def test_secret_matches_only_the_right_secret():
    secret_hash = keys.hash_secret("right")

    assert keys.secret_matches("right", secret_hash)
    assert not keys.secret_matches("wrong", secret_hash)
