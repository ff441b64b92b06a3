package psk

import "fmt"

// LoadShareOrKey reads a secret file that may be either a share file or a
// contributory key file (with the same permission check as LoadShare) and
// returns whichever it is; the other result is nil. Errors name the file.
func LoadShareOrKey(path string) (*Share, *ContribKey, error) {
	data, perm, err := readFileMode(path)
	if err != nil {
		return nil, nil, err
	}
	defer Wipe(data)
	t, err := FileType(data)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	if t == TypeGroup {
		return nil, nil, fmt.Errorf("%s: is a group descriptor, not a share or key file", path)
	}
	if err := checkSecretMode(path, perm); err != nil {
		return nil, nil, err
	}
	switch t {
	case TypeShare:
		s, err := ParseShare(data)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", path, err)
		}
		return s, nil, nil
	case TypeKey:
		k, err := ParseContribKey(data)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", path, err)
		}
		return nil, k, nil
	}
	return nil, nil, fmt.Errorf("%s: unknown type %q", path, t)
}
