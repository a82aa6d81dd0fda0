// YAML read as the JSON it stands for, the way kubectl and the API server
// read manifests and kubeconfigs: one reader for the folder source and the
// kubeconfig. Pure: any thread.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <meshwire/dp/result.h>

namespace meshwire::control {

// Every document of a YAML text, as JSON. Quoted scalars are strings; plain
// ones are null, booleans and numbers where YAML 1.2's core schema says so,
// strings otherwise. Errors name the line ("yaml: line 3: ...").
dp::Result<std::vector<nlohmann::json>> parse_yaml_documents(const std::string& text);

}  // namespace meshwire::control
