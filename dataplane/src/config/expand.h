// ${VAR} expansion of the config's string values, before they are read: one
// ConfigMap serves every node of a cluster, and what differs per node (its
// name, its address) comes from the pod's environment (the downward API).
// Private to dataplane/src/config.
#pragma once

#include <yaml-cpp/yaml.h>

#include <string>
#include <string_view>

#include <meshwire/dp/config.h>
#include <meshwire/dp/result.h>

namespace meshwire::dp {

// `text` with every ${NAME} replaced by env's NAME and every $$ by $; a $
// followed by anything else stays as it is. An unset or empty variable, a
// name that is not [A-Za-z_][A-Za-z0-9_]* or a ${ without its } is an error
// "<path>: ..." naming the variable; the value of the field is never in it
// (it may be key material).
Result<std::string> expand_variables(std::string_view text, const Environment& env, const std::string& path);

// Expands every scalar value under `root` in place (keys are left alone).
// Errors name the field path ("node.name: ..."). yaml-cpp may throw: the
// caller sits under parse_config's try/catch.
Status expand_tree(YAML::Node root, const Environment& env);

}  // namespace meshwire::dp
