package fakeec2

import "strings"

// maxTags is EC2's limit of user tags per resource.
const maxTags = 50

// taggable resolves a CreateTags/DeleteTags ResourceId to the tag map of
// the volume, snapshot or instance it names.
func (s *Server) taggable(id string) (map[string]string, error) {
	prefix, _, _ := strings.Cut(id, "-")
	switch prefix {
	case "vol":
		v, err := s.lookupVolume(id)
		if err != nil {
			return nil, err
		}
		if v.Tags == nil {
			v.Tags = map[string]string{}
		}
		return v.Tags, nil
	case "snap":
		sn, err := s.lookupSnapshot(id)
		if err != nil {
			return nil, err
		}
		if sn.Tags == nil {
			sn.Tags = map[string]string{}
		}
		return sn.Tags, nil
	case "i":
		in, err := s.lookupInstance(id)
		if err != nil {
			return nil, err
		}
		if in.Tags == nil {
			in.Tags = map[string]string{}
		}
		return in.Tags, nil
	}
	return nil, errorf("InvalidID", "The ID '%s' is not valid", id)
}

// resources resolves every ResourceId.N before anything changes, so a bad
// id leaves all resources untouched, as on EC2.
func (s *Server) resources(r *request) ([]map[string]string, error) {
	ids := r.list("ResourceId")
	if len(ids) == 0 {
		return nil, errorf("MissingParameter", "The request must contain the parameter resourceIdSet")
	}
	var out []map[string]string
	for _, id := range ids {
		tags, err := s.taggable(id)
		if err != nil {
			return nil, err
		}
		out = append(out, tags)
	}
	return out, nil
}

func (s *Server) createTags(r *request) (any, error) {
	params := tagParams(r.form, "Tag")
	if len(params) == 0 {
		return nil, errorf("MissingParameter", "The request must contain the parameter tagSet")
	}
	targets, err := s.resources(r)
	if err != nil {
		return nil, err
	}
	for _, t := range params {
		if err := checkTagKey(t.key); err != nil {
			return nil, err
		}
	}
	for _, tags := range targets {
		n := len(tags)
		for _, t := range params {
			if _, has := tags[t.key]; !has {
				n++
			}
		}
		if n > maxTags {
			return nil, errorf("TagLimitExceeded", "The maximum number of tags per resource is %d", maxTags)
		}
	}
	for _, tags := range targets {
		for _, t := range params {
			tags[t.key] = t.value
		}
	}
	return acknowledged(), nil
}

// deleteTags follows EC2: no Tag deletes every tag; a key alone deletes
// it whatever its value; a key with a value (even "") deletes it only if
// the value matches.
func (s *Server) deleteTags(r *request) (any, error) {
	targets, err := s.resources(r)
	if err != nil {
		return nil, err
	}
	params := tagParams(r.form, "Tag")
	for _, tags := range targets {
		if len(params) == 0 {
			clear(tags)
			continue
		}
		for _, t := range params {
			if v, has := tags[t.key]; has && (!t.hasValue || v == t.value) {
				delete(tags, t.key)
			}
		}
	}
	return acknowledged(), nil
}
